"""AdaShare (NeurIPS 2020): one backbone shared by all tasks with a learned per-task select/skip policy per block.

Importing this package registers the method with effhub (`effhub train|eval|convert|demo adashare`); `integrate()`,
run by `import effhub`, registers the config, models and image processor with the transformers Auto classes. The
classes below are imported on first use.
"""

from __future__ import annotations

from ...lazy import lazy_attributes
from ...registry import MethodEntry, MethodOption, register_method

_LAZY = {
    "AdaShareConfig": "configuration_adashare",
    "AdaShareModel": "modeling_adashare",
    "AdaShareForSemanticSegmentation": "modeling_adashare",
    "AdaShareForDepthEstimation": "modeling_adashare",
    "AdaShareModelOutput": "modeling_adashare",
    "AdaSharePreTrainedModel": "modeling_adashare",
    "recalibrate_task_batchnorm": "modeling_adashare",
    "AdaShareImageProcessorPil": "image_processing_pil_adashare",
}


def integrate() -> None:
    """Register AdaShare's config, models and image processor with the transformers Auto classes."""
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForDepthEstimation,
        AutoModelForSemanticSegmentation,
    )

    from .configuration_adashare import AdaShareConfig
    from .image_processing_pil_adashare import AdaShareImageProcessorPil
    from .modeling_adashare import AdaShareForDepthEstimation, AdaShareForSemanticSegmentation, AdaShareModel

    AutoConfig.register(AdaShareConfig.model_type, AdaShareConfig, exist_ok=True)
    AutoModel.register(AdaShareConfig, AdaShareModel, exist_ok=True)
    # the pipelines load these: same weights, but they run only the segmentation (depth) task by default
    AutoModelForSemanticSegmentation.register(AdaShareConfig, AdaShareForSemanticSegmentation, exist_ok=True)
    AutoModelForDepthEstimation.register(AdaShareConfig, AdaShareForDepthEstimation, exist_ok=True)
    AutoImageProcessor.register(AdaShareConfig, image_processor_classes={"pil": AdaShareImageProcessorPil},
                                exist_ok=True)


register_method(
    MethodEntry(
        name="adashare",
        kind="model",
        description="AdaShare: one shared dilated ResNet, a learned select/skip policy per task and block",
        recipe_class="effhub.models.adashare.recipe_adashare:AdaShareRecipe",
        train="effhub.models.adashare.training_adashare:train",
        evaluate="effhub.models.adashare.training_adashare:evaluate_run",
        convert="effhub.models.adashare.convert_adashare:convert",
        demo="effhub.models.adashare.demo_adashare:run_demo",
        integrate="effhub.models.adashare:integrate",
        options=(MethodOption(
            name="policy", command="convert",
            help="JSON of the re-trained hard policy: {task: [0/1]*L} or the authors' {'task1_policy': [[1,0],...]}; "
                 "'argmax' fixes the argmax of the checkpoint's logits; default: none (argmax at inference, warned)"),),
        papers=("sun2020adashare",),
    )
)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
