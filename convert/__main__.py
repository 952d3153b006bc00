"""``python -m convert COMMAND …``: run | checkpoint | demo | download | bench | fixtures | evaluate (each has --help)."""
from __future__ import annotations

import sys

from .cli import run_cli

COMMANDS = {
    "run": ("convert.pipeline", "main", "download -> extract -> write_h5 -> verify for variants (or 'all')"),
    "checkpoint": ("convert.user.cli", "main", "your own TF-slim checkpoint -> Keras (.h5, .keras, .tflite), proven"),
    "demo": ("convert.factory.demo", "demo_main", "offline demo over factory archives served on loopback"),
    "download": ("convert.download", "main", "download, verify and extract archives into the cache"),
    "bench": ("convert.bench", "main", "time the pipeline per stage against the floor and a naive baseline"),
    "fixtures": ("convert.factory.fixtures", "main", "build official-layout factory archives"),
    "evaluate": ("convert.evaluate.cli", "main", "ImageNet top-1/top-5 of converted weights and the slim graph"),
}


def usage() -> str:
    lines = ["usage: python -m convert COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "`python -m convert COMMAND --help` describes a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}; valid: {', '.join(COMMANDS)}\n\n{usage()}", file=sys.stderr)
        return 2
    import importlib

    module, func, _ = COMMANDS[argv[0]]
    return getattr(importlib.import_module(module), func)(argv[1:])


def console() -> None:
    """The console script ``mobilenet-convert``: ``python -m convert`` (exits with the command's code)."""
    run_cli(main)


if __name__ == "__main__":
    console()
