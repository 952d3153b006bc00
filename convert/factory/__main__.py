"""``python -m convert.factory NAME... --out DIR [--seed N]``: build factory archives."""
from ..cli import run_cli
from .fixtures import main

if __name__ == "__main__":
    run_cli(main)
