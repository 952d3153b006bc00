"""Small helpers shared by every command-line entry point: clean errors, non-zero exits."""
from __future__ import annotations

import logging
import os
import sys
from typing import Callable


class UserError(Exception):
    """An error caused by bad input; printed as one clear line, exit code 2."""


def quiet_tf() -> None:
    """Silence TensorFlow's C++ log and its Python deprecation notices (call before TF is imported).

    TF's one-line oneDNN banner at import is printed before its logging starts and cannot be turned off."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run ``main`` and turn known errors into a message on stderr plus a non-zero exit code."""
    from .manifest import ManifestError, UnknownVariantError

    try:
        code = main(argv)
    except (UserError, ManifestError, UnknownVariantError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code or 0)
