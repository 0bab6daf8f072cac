"""DIME-FM (Sun et al., "DIME-FM: DIstilling Multimodal and Efficient Foundation Models", ICCV 2023,
arXiv 2303.18232): distil a CLIP-style teacher into a small student from unpaired images and texts.

Importing this package registers the method with effhub (`effhub train|eval|export|demo dime-fm`,
`effhub dime-fm cache-features`); `integrate()`, run by `import effhub`, registers the config and the model with the
transformers Auto classes (`AutoModel`, `AutoModelForZeroShotImageClassification`) and the processor
(`AutoProcessor`: a `CLIPProcessor`). The classes below are imported on first use.
"""

from __future__ import annotations

from ...lazy import lazy_attributes
from ...registry import MethodCommand, MethodEntry, MethodOption, register_method

_LAZY = {
    "DimeFmConfig": "configuration_dime_fm",
    "DimeFmModel": "modeling_dime_fm",
    "DimeFmOutput": "modeling_dime_fm",
    "DistillationWeights": "losses_dime_fm",
    "dime_fm_loss": "losses_dime_fm",
    "cache_features": "features_dime_fm",
    "load_feature_cache": "features_dime_fm",
}


def integrate() -> None:
    """Register DIME-FM's config, model and processor with the transformers Auto classes."""
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForZeroShotImageClassification,
        AutoProcessor,
        CLIPProcessor,
    )

    from .configuration_dime_fm import DimeFmConfig
    from .modeling_dime_fm import DimeFmModel

    AutoConfig.register(DimeFmConfig.model_type, DimeFmConfig, exist_ok=True)
    AutoModel.register(DimeFmConfig, DimeFmModel, exist_ok=True)
    AutoModelForZeroShotImageClassification.register(DimeFmConfig, DimeFmModel, exist_ok=True)
    AutoProcessor.register(DimeFmConfig, CLIPProcessor, exist_ok=True)


_CACHE = "cache-features"
register_method(
    MethodEntry(
        name="dime-fm",
        kind="model",
        description="DIME-FM: distil a CLIP teacher into a small student from unpaired images and texts",
        recipe_class="effhub.models.dime_fm.recipe_dime_fm:DimeFmRecipe",
        train="effhub.models.dime_fm.training_dime_fm:train",
        evaluate="effhub.models.dime_fm.training_dime_fm:evaluate_run",
        convert="effhub.models.dime_fm.convert_dime_fm:convert",
        demo="effhub.models.dime_fm.demo_dime_fm:run_demo",
        export="effhub.models.dime_fm.convert_dime_fm:export",
        integrate="effhub.models.dime_fm:integrate",
        options=(
            MethodOption("teacher", "the teacher: a CLIP run folder, a Hub id, or 'base' (the shipped clip-teacher)"),
            MethodOption("features", "the teacher-feature cache of `effhub dime-fm cache-features`"),
            MethodOption("teacher", "the teacher of the student's text tower (a CLIP folder, Hub id or 'base')",
                         command="convert"),
            MethodOption("teacher", "the teacher: a CLIP run folder, a Hub id, or 'base' (the shipped clip-teacher)",
                         command=_CACHE, required=True),
            MethodOption("images", "an image dataset: a `datasets` folder (save_to_disk), an image folder, "
                         "'world[:N]' (the generated image pool: 1 to 4 objects each) or 'world-single[:N]' (one "
                         "object each)", command=_CACHE, required=True),
            MethodOption("texts", "a text corpus: a .txt file (a text per line), a .tsv file (the text in the last "
                         "column), a `datasets` folder, or 'world[:N]' (the generated corpus)", command=_CACHE,
                         required=True),
            MethodOption("output", "the cache folder to write (resumable)", command=_CACHE, required=True),
            MethodOption("image_column", "the image column of --images", command=_CACHE, default="image"),
            MethodOption("text_column", "the text column of a --texts dataset", command=_CACHE, default="text"),
            MethodOption("batch_size", "samples per teacher forward pass", command=_CACHE, default="256"),
            MethodOption("no_progress", "set to 1 to hide the progress bar", command=_CACHE, default=None),
        ),
        tools=(MethodCommand(_CACHE, "compute the teacher's image and text embeddings once (a datasets cache)",
                             "effhub.models.dime_fm.features_dime_fm:cache_features_command"),),
        papers=("sun2023dimefm", "radford2021clip"),
    )
)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
