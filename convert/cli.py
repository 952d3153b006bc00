"""Small helpers shared by every command-line entry point: clean errors, non-zero exits.

Only command-line modules import this; library modules raise the errors of :mod:`convert.errors`."""
from __future__ import annotations

import sys
from typing import Callable

from .env import quiet_tf  # noqa: F401  (re-exported for the scripts)
from .errors import ConversionError, UserError
from .manifest import ManifestError, UnknownVariantError


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run ``main`` and turn known errors into a message on stderr plus a non-zero exit code."""
    try:
        code = main(argv)
    except (UserError, ConversionError, ManifestError, UnknownVariantError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code or 0)
