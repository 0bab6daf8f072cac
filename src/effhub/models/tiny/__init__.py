"""effhub's tiny reference method: the foundation demo, and the template a new method folder follows.

Importing this package registers the config and model with the transformers Auto classes and the method with effhub.
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from ...registry import MethodEntry, register_method
from .configuration_tiny import EffhubTinyConfig
from .modeling_tiny import EffhubTinyForImageClassification, EffhubTinyOutput, EffhubTinyPreTrainedModel

AutoConfig.register(EffhubTinyConfig.model_type, EffhubTinyConfig, exist_ok=True)
AutoModel.register(EffhubTinyConfig, EffhubTinyForImageClassification, exist_ok=True)
AutoModelForImageClassification.register(EffhubTinyConfig, EffhubTinyForImageClassification, exist_ok=True)

register_method(
    MethodEntry(
        name="tiny",
        description="a tiny conv classifier on generated colour blobs: the infrastructure's end-to-end demo",
        recipe_class="effhub.models.tiny.training_tiny:TinyRecipe",
        train="effhub.models.tiny.training_tiny:train",
        evaluate="effhub.models.tiny.training_tiny:evaluate_run",
        demo="effhub.models.tiny.demo_tiny:run_demo",
    )
)

__all__ = ["EffhubTinyConfig", "EffhubTinyForImageClassification", "EffhubTinyOutput", "EffhubTinyPreTrainedModel"]
