"""effhub: efficient image and video understanding methods, packaged the Hugging Face way.

Importing effhub registers every method's configuration and model classes with the transformers Auto classes (and
adapter methods with PEFT), so ``AutoModel.from_pretrained("org/name")`` works without ``trust_remote_code``.

The ``effhub`` command defers that registration until a command needs models (see ``effhub_cli``), so that
``effhub --help``, ``effhub methods`` and ``effhub recipes list`` do not import torch.
"""

__version__ = "0.1.0"

import os as _os  # noqa: E402

from . import errors  # noqa: E402
from .registry import (  # noqa: E402
    MethodEntry,
    MethodOption,
    discover,
    get_method,
    integrate_all,
    list_methods,
    register_method,
)

# the console script sets this only while it imports effhub.cli, and removes it at once (children never see it)
DEFER_INTEGRATION_VARIABLE = "_EFFHUB_CLI_DEFER_INTEGRATION"

discover()
if _os.environ.get(DEFER_INTEGRATION_VARIABLE) != "1":
    integrate_all()

# public classes of method folders, imported on first use (`from effhub import DualCoOpConfig`)
_PUBLIC = {"DualCoOpConfig": "effhub.adapters.dualcoop", "DualCoOpModel": "effhub.adapters.dualcoop"}


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'effhub' has no attribute '{name}'")


__all__ = ["__version__", "errors", "DualCoOpConfig", "DualCoOpModel", "MethodEntry", "MethodOption",
           "register_method", "discover", "integrate_all", "get_method", "list_methods"]
