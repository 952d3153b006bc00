"""``python -m convert.download`` (the same as ``python -m convert download``)."""
from ..cli import run_cli
from .cli import main

if __name__ == "__main__":
    run_cli(main)
