import sys

from .cli import main

if __name__ == "__main__":  # guarded: worker processes (spawned) import this module without running the CLI
    sys.exit(main())
