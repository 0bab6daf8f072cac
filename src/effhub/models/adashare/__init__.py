"""AdaShare (NeurIPS 2020): one backbone shared by all tasks with a learned per-task select/skip policy per block.

Importing this package registers the config, model and image processor with the transformers Auto classes and the
method with effhub (`effhub train|eval|convert adashare`).
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForDepthEstimation,
    AutoModelForSemanticSegmentation,
)

from ...registry import MethodEntry, register_method
from .configuration_adashare import AdaShareConfig
from .image_processing_adashare import AdaShareImageProcessorPil
from .modeling_adashare import (
    AdaShareForDepthEstimation,
    AdaShareForSemanticSegmentation,
    AdaShareModel,
    AdaShareModelOutput,
    AdaSharePreTrainedModel,
)

AutoConfig.register(AdaShareConfig.model_type, AdaShareConfig, exist_ok=True)
AutoModel.register(AdaShareConfig, AdaShareModel, exist_ok=True)
# the pipelines load these: same weights, but they run only the segmentation (depth) task by default
AutoModelForSemanticSegmentation.register(AdaShareConfig, AdaShareForSemanticSegmentation, exist_ok=True)
AutoModelForDepthEstimation.register(AdaShareConfig, AdaShareForDepthEstimation, exist_ok=True)
AutoImageProcessor.register(AdaShareConfig, image_processor_classes={"pil": AdaShareImageProcessorPil}, exist_ok=True)

register_method(
    MethodEntry(
        name="adashare",
        description="AdaShare: one shared dilated ResNet, a learned select/skip policy per task and block",
        recipe_class="effhub.models.adashare.recipe_adashare:AdaShareRecipe",
        train="effhub.models.adashare.training_adashare:train",
        evaluate="effhub.models.adashare.training_adashare:evaluate_run",
        convert="effhub.models.adashare.convert_adashare:convert",
        demo="effhub.models.adashare.demo_adashare:run_demo",
        add_cli_arguments="effhub.models.adashare.convert_adashare:add_cli_arguments",
        papers=("sun2020adashare",),
    )
)

__all__ = [
    "AdaShareConfig",
    "AdaShareModel",
    "AdaShareForSemanticSegmentation",
    "AdaShareForDepthEstimation",
    "AdaShareModelOutput",
    "AdaSharePreTrainedModel",
    "AdaShareImageProcessorPil",
]
