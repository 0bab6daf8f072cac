"""`python -m effhub.train <method> ...`: the entry point for `accelerate launch` (same flags as `effhub train`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
