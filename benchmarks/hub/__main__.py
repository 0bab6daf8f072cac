"""`python -m benchmarks.hub [--seconds N] [--clients N]`: the local hub's load check."""

import sys

from .run import main

sys.exit(main())
