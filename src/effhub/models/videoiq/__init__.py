"""VideoIQ (ICCV 2021): an any-precision video backbone with a per-frame bit-width (or skip) policy.

Importing this package registers the method with effhub (`effhub train|eval|demo videoiq`); `integrate()`, run by
`import effhub`, registers the config, the model and the processor with the transformers Auto classes. The classes
below are imported on first use.
"""

from __future__ import annotations

from ...lazy import lazy_attributes
from ...registry import MethodEntry, register_method

_LAZY = {
    "VideoIQConfig": "configuration_videoiq",
    "VideoIQForVideoClassification": "modeling_videoiq",
    "VideoIQPreTrainedModel": "modeling_videoiq",
    "VideoIQOutput": "modeling_videoiq",
    "VideoIQAnyPrecisionConv2d": "modeling_videoiq",
    "VideoIQPolicyNetwork": "modeling_videoiq",
    "VideoIQImageProcessorPil": "image_processing_pil_videoiq",
}


def integrate() -> None:
    """Register VideoIQ's config, model and processor with the transformers Auto classes."""
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForVideoClassification,
    )

    from .configuration_videoiq import VideoIQConfig
    from .image_processing_pil_videoiq import VideoIQImageProcessorPil
    from .modeling_videoiq import VideoIQForVideoClassification

    AutoConfig.register(VideoIQConfig.model_type, VideoIQConfig, exist_ok=True)
    AutoModel.register(VideoIQConfig, VideoIQForVideoClassification, exist_ok=True)
    AutoModelForVideoClassification.register(VideoIQConfig, VideoIQForVideoClassification, exist_ok=True)
    AutoImageProcessor.register(VideoIQConfig, image_processor_classes={"pil": VideoIQImageProcessorPil},
                                exist_ok=True)


register_method(
    MethodEntry(
        name="videoiq",
        kind="model",
        description="VideoIQ: any-precision video ResNet with a per-frame bit-width/skip policy (dynamic inference)",
        recipe_class="effhub.models.videoiq.recipe_videoiq:VideoIQRecipe",
        train="effhub.models.videoiq.training_videoiq:train",
        evaluate="effhub.models.videoiq.training_videoiq:evaluate_run",
        demo="effhub.models.videoiq.demo_videoiq:run_demo",
        integrate="effhub.models.videoiq:integrate",
        papers=("sun2021videoiq",),
    )
)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
