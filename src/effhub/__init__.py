"""effhub: efficient image and video understanding methods, packaged the Hugging Face way.

Importing effhub registers every method's configuration and model classes with the transformers Auto classes (and
the DualCoOp PEFT method with PEFT), so ``AutoModel.from_pretrained("org/name")`` works without ``trust_remote_code``.
"""

__version__ = "0.1.0"

from . import errors  # noqa: E402
from .registry import MethodEntry, discover, get_method, list_methods, register_method  # noqa: E402

discover()

__all__ = ["__version__", "errors", "MethodEntry", "register_method", "discover", "get_method", "list_methods"]
