"""effhub's tiny reference method: the foundation demo, and the template a new method folder follows.

Importing this package registers the method with effhub; `integrate()`, run by `import effhub`, registers the config
and model with the transformers Auto classes. The classes below are imported on first use.
"""

from __future__ import annotations

from ...lazy import lazy_attributes
from ...registry import MethodEntry, register_method

_LAZY = {
    "EffhubTinyConfig": "configuration_tiny",
    "EffhubTinyForImageClassification": "modeling_tiny",
    "EffhubTinyOutput": "modeling_tiny",
    "EffhubTinyPreTrainedModel": "modeling_tiny",
}


def integrate() -> None:
    """Register the tiny config and classifier with the transformers Auto classes."""
    from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

    from .configuration_tiny import EffhubTinyConfig
    from .modeling_tiny import EffhubTinyForImageClassification

    AutoConfig.register(EffhubTinyConfig.model_type, EffhubTinyConfig, exist_ok=True)
    AutoModel.register(EffhubTinyConfig, EffhubTinyForImageClassification, exist_ok=True)
    AutoModelForImageClassification.register(EffhubTinyConfig, EffhubTinyForImageClassification, exist_ok=True)


register_method(
    MethodEntry(
        name="tiny",
        kind="model",
        description="a tiny conv classifier on generated colour blobs: the infrastructure's end-to-end demo",
        recipe_class="effhub.models.tiny.training_tiny:TinyRecipe",
        train="effhub.models.tiny.training_tiny:train",
        evaluate="effhub.models.tiny.training_tiny:evaluate_run",
        demo="effhub.models.tiny.demo_tiny:run_demo",
        integrate="effhub.models.tiny:integrate",
    )
)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
