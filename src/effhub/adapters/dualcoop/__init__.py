"""DualCoOp (Sun, Hu and Saenko, "DualCoOp: Fast Adaptation to Multi-Label Recognition with Limited Annotations",
NeurIPS 2022, arXiv:2206.09541) as a PEFT adapter on a `transformers.CLIPModel`.

Importing this package registers the method with effhub (`effhub train|eval|demo dualcoop`); `integrate()`, run by
`import effhub`, adds the `EFFHUB_DUALCOOP` member to PEFT's `PeftType` and registers `DualCoOpConfig` /
`DualCoOpModel` with `peft.utils.register_peft_method`, so `get_peft_model` and `PeftModel.from_pretrained` work.
"""

from __future__ import annotations

from ...lazy import lazy_attributes
from ...registry import MethodEntry, MethodOption, register_method

_LAZY = {
    "DualCoOpConfig": "config",
    "DualCoOpModel": "model",
    "DualCoOpOutput": "model",
    "DualCoOpLayer": "layer",
    "asymmetric_loss": "loss",
}


def integrate() -> None:
    """Add `EFFHUB_DUALCOOP` to PEFT's `PeftType` and register DualCoOp's config and tuner with PEFT (once)."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import PeftType, register_peft_method

    from .config import PEFT_METHOD_NAME, PEFT_TYPE_NAME, DualCoOpConfig, extend_peft_type
    from .model import DualCoOpModel

    extend_peft_type()
    if getattr(PeftType, PEFT_TYPE_NAME) not in PEFT_TYPE_TO_TUNER_MAPPING:
        register_peft_method(name=PEFT_METHOD_NAME, config_cls=DualCoOpConfig, model_cls=DualCoOpModel,
                             prefix=DualCoOpModel.prefix)


register_method(
    MethodEntry(
        name="dualcoop",
        kind="adapter",
        description="DualCoOp: positive/negative prompt contexts on a frozen CLIP for partial-label and zero-shot "
                    "multi-label recognition (a PEFT method)",
        recipe_class="effhub.adapters.dualcoop.recipe_dualcoop:DualCoOpRecipe",
        train="effhub.adapters.dualcoop.training_dualcoop:train",
        evaluate="effhub.adapters.dualcoop.training_dualcoop:evaluate_run",
        demo="effhub.adapters.dualcoop.demo_dualcoop:run_demo",
        integrate="effhub.adapters.dualcoop:integrate",
        options=(MethodOption(name="label_ratio", command="train",
                              help="fraction of the training labels kept (partial labels), e.g. 0.1; overrides "
                                   "data.label_ratio of the recipe"),),
        papers=("sun2022dualcoop", "radford2021clip"),
    )
)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
