"""The ``effhub`` console script: effhub's command line, started without importing torch where it can.

``import effhub`` registers every model with the transformers Auto classes, which imports torch and transformers
(seconds). The command line needs that only for commands that run models; ``effhub --help``, ``effhub methods`` and
``effhub recipes list`` need light metadata. This launcher lives outside the ``effhub`` package because Python runs
``effhub/__init__.py`` before any of its modules: it asks effhub to defer the registration while ``effhub.cli`` is
imported (through a variable removed again at once, so no child process inherits it), and ``effhub.cli`` registers
before a command that needs models.
"""

import os
import sys


def main() -> int:
    """Run the ``effhub`` command line (the console script's entry point)."""
    variable = "_EFFHUB_CLI_DEFER_INTEGRATION"
    os.environ[variable] = "1"
    try:
        from effhub import cli
    finally:
        os.environ.pop(variable, None)
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
