"""`DualCoOpConfig`: the PEFT configuration of DualCoOp (Sun, Hu and Saenko, "DualCoOp: Fast Adaptation to
Multi-Label Recognition with Limited Annotations", NeurIPS 2022, arXiv:2206.09541).

PEFT only accepts methods whose type is a member of its `PeftType` enum. effhub adds the member `EFFHUB_DUALCOOP` when
it is imported (:func:`extend_peft_type`), so `adapter_config.json` reads `"peft_type": "EFFHUB_DUALCOOP"`: loading an
adapter without `import effhub` fails with PEFT's bare `KeyError: 'EFFHUB_DUALCOOP'`, which at least names effhub.

The config stores everything needed to rebuild the prompts at load time: the class names, the tokenizer's name or
folder, and the token ids of each class name, so that the adapter files hold only the learned contexts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from peft import PeftConfig
from peft.utils import PeftType

from ...errors import ConfigError

PEFT_TYPE_NAME = "EFFHUB_DUALCOOP"
PEFT_METHOD_NAME = PEFT_TYPE_NAME.lower()
# the module whose weights the contexts live beside (and whose width they share): CLIP's text token embedding
TARGET_MODULE = "text_model.embeddings.token_embedding"
# the paper's constants: spatial softmax temperature 20 and logit scale 5, whose product equals OpenAI CLIP's logit
# scale (100); see DualCoOpConfig.scale_source
PAPER_REGION_TEMPERATURE = 20.0
PAPER_LOGIT_SCALE = 5.0
OPENAI_CLIP_LOGIT_SCALE = 100.0
SCALE_SOURCES = ("base_logit_scale", "paper", "fixed")
DENSE_MODES = ("values", "class_values", "tokens", "global")
NEGATIVE_PROMPTS = ("class", "shared", "image_threshold")
# a tokenizer reference that names a CLIP teacher shipped inside effhub (no machine path in adapter_config.json)
SHIPPED_TEACHER_PREFIX = "effhub-shipped:"


def extend_peft_type(name: str = PEFT_TYPE_NAME) -> None:
    """Add `name` to PEFT's `PeftType` enum (a `str` Enum, which cannot be subclassed); a no-op when present.

    This relies on CPython's Enum internals (member maps); `tests/adapters/dualcoop` re-checks it against the pinned
    PEFT and Python. Upstreaming an entry to PEFT is the long-term route.
    """
    if name in PeftType.__members__:
        return
    member = str.__new__(PeftType, name)
    member._name_ = name
    member._value_ = name
    member.__objclass__ = PeftType
    member._sort_order_ = len(PeftType._member_names_)
    PeftType._member_map_[name] = member
    PeftType._value2member_map_[name] = member
    PeftType._member_names_.append(name)
    type.__setattr__(PeftType, name, member)


extend_peft_type()


@dataclass
class DualCoOpConfig(PeftConfig):
    """Configuration of a DualCoOp adapter on a `transformers.CLIPModel`.

    Args:
        class_names (`list[str]`): the classes the adapter recognises by default (the training classes); unique,
            non-empty. A forward call may pass other class names (zero-shot), except with class-specific contexts.
        n_ctx (`int`, defaults to 16): learned context tokens of each prompt ("X X ... X <class name>.").
        n_ctx_neg (`int`, *optional*): context tokens of the negative prompts (default: `n_ctx`).
        class_specific (`bool`): one context set per class (CSC) instead of one shared by all classes.
        ctx_init_pos / ctx_init_neg (`str`, *optional*): initialise the contexts from the token embeddings of these
            words (their token count must equal the context count); default: random N(0, 0.02).
        tokenizer (`str`, *optional*): Hub repo id or folder of the CLIP tokenizer (default: the base model's
            `name_or_path` at injection). Needed only to tokenize class names other than `class_names`.
        class_token_ids (`list[list[int]]`, *optional*): token ids of "<class name>." for every class, without the
            start and end-of-text tokens; filled at injection from the tokenizer. Prompts are rebuilt from them at load.
        bos_token_id / eos_token_id (`int`, *optional*): start and end-of-text ids (default: the base model's).
        scale_source (`str`): how the two scale constants were set. `"base_logit_scale"` (default): the paper's
            spatial temperature 20 and logit scale 5 multiply to OpenAI CLIP's learned logit scale (100), the spread
            they were tuned for; effhub keeps the logit scale 5 and sets the temperature to 20 x exp(s) / 100, where
            exp(s) is the base model's learned logit scale, so the product equals the base model's own scale.
            `"paper"`: 20 and 5 as published. `"fixed"`: the values given below.
        region_temperature (`float`, *optional*): the spatial softmax temperature (filled at injection).
        logit_scale (`float`, *optional*): the scale of the aggregated dual logits (filled at injection).
        dense_mode (`str`): region features of the ViT: `"values"` (MaskCLIP's value path through the last block,
            default, as the paper's ResNet attention-pool path), `"class_values"` (the class token's path through the
            last block with one patch's value in place of the attention output: the region features of effhub's
            mean-pooling teachers, whose value path is not in the joint space), `"tokens"` (the last layer's patch
            tokens) or `"global"` (one region, the pooled image embedding: no spatial aggregation).
        negative_prompt (`str`): `"class"` (the paper): the negative prompt of class c is "<ctx_neg> <class c>.";
            `"shared"`: one negative prompt "<ctx_neg> ." without a class name for every class. With a small text
            tower the two prompts of one class share most of their feature and the (negative, positive) softmax
            cancels the class (see docs/dualcoop.md); a shared negative keeps the class in the positive logit only.
            `"image_threshold"`: no negative prompt and no negative contexts; the negative logit of every class is the
            log-mean-exp of the image's positive logits over the scored classes, an image-level threshold (a class
            is present when its positive logit stands out of the image's average). A negative prompt's feature
            varies from image to image without regard to the class, which reorders the images of a class; this
            threshold measures the same image's other classes instead (docs/dualcoop.md). Needs two or more classes.
        logit_offset (`float`): a fixed (not learned) offset added to every positive dual logit, so that p(present)
            starts near the label prior instead of 0.5; 0 (default) is the paper. Without it the first steps spend
            the contexts on calibration and lose the prompts' ranking (docs/dualcoop.md); `dual_logit_offset` computes
            one from the training labels.
        text_width (`int`, *optional*): the base CLIP's text embedding width (filled at injection; an adapter is
            refused on a CLIP of another width).
        image_size (`int`, *optional*): the input size the adapter was trained at (recorded; a different size is run
            with interpolated position embeddings).
        asl_gamma_neg / asl_gamma_pos / asl_clip / loss_weight: the asymmetric loss (Ridnik et al.) on the dual logits:
            focusing 2 and 1, probability margin 0.05 on negatives, and the weight of the summed loss.
        target_modules: CLIP's text token embedding (the contexts share its width); leave the default.
    """

    class_names: list[str] = field(default_factory=list, metadata={"help": "the training classes"})
    n_ctx: int = field(default=16, metadata={"help": "learned context tokens of each positive prompt"})
    n_ctx_neg: Optional[int] = field(default=None, metadata={"help": "context tokens of negative prompts"})
    class_specific: bool = field(default=False, metadata={"help": "one context set per class (CSC)"})
    ctx_init_pos: Optional[str] = field(default=None, metadata={"help": "words to initialise positive contexts"})
    ctx_init_neg: Optional[str] = field(default=None, metadata={"help": "words to initialise negative contexts"})
    tokenizer: Optional[str] = field(default=None, metadata={"help": "tokenizer repo id or folder"})
    class_token_ids: Optional[list[list[int]]] = field(default=None, metadata={"help": "token ids of each class"})
    bos_token_id: Optional[int] = field(default=None, metadata={"help": "start token id"})
    eos_token_id: Optional[int] = field(default=None, metadata={"help": "end-of-text token id"})
    scale_source: str = field(default="base_logit_scale", metadata={"help": f"one of {SCALE_SOURCES}"})
    region_temperature: Optional[float] = field(default=None, metadata={"help": "spatial softmax temperature"})
    logit_scale: Optional[float] = field(default=None, metadata={"help": "scale of the dual logits"})
    dense_mode: str = field(default="values", metadata={"help": f"one of {DENSE_MODES}"})
    negative_prompt: str = field(default="class", metadata={"help": f"one of {NEGATIVE_PROMPTS}"})
    logit_offset: float = field(default=0.0, metadata={"help": "fixed offset added to the positive dual logits"})
    image_size: Optional[int] = field(default=None, metadata={"help": "training input size (pixels)"})
    text_width: Optional[int] = field(default=None, metadata={"help": "the base CLIP's text width (filled)"})
    asl_gamma_neg: float = field(default=2.0, metadata={"help": "ASL focusing of negatives"})
    asl_gamma_pos: float = field(default=1.0, metadata={"help": "ASL focusing of positives"})
    asl_clip: float = field(default=0.05, metadata={"help": "ASL probability margin of negatives"})
    loss_weight: float = field(default=1.0, metadata={"help": "weight of the summed ASL loss"})
    target_modules: Optional[Union[list[str], str]] = field(
        default_factory=lambda: [TARGET_MODULE], metadata={"help": "CLIP's text token embedding"})

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = getattr(PeftType, PEFT_TYPE_NAME)
        self.validate()

    @property
    def num_ctx_neg(self) -> int:
        """Context tokens of the negative prompts (0 when `negative_prompt="image_threshold"`: no negative prompt)."""
        if self.negative_prompt == "image_threshold":
            return 0
        return self.n_ctx if self.n_ctx_neg is None else self.n_ctx_neg

    def validate(self) -> None:
        """Refuse bad values with an `effhub.errors.ConfigError` naming the fix."""
        names = self.class_names
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise ConfigError(f"class_names is {names!r}", "pass a list of class names, e.g. ['cat', 'dog']")
        check_class_names(names)
        self.class_names = list(names)
        for name in ("n_ctx", "n_ctx_neg"):
            value = getattr(self, name)
            if name == "n_ctx_neg" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}", "pass a positive number of context tokens")
        if self.scale_source not in SCALE_SOURCES:
            raise ConfigError(f"scale_source={self.scale_source!r}", f"use one of {list(SCALE_SOURCES)}")
        if self.scale_source == "fixed" and (self.region_temperature is None or self.logit_scale is None):
            raise ConfigError("scale_source='fixed' without region_temperature and logit_scale",
                              "pass both values, or use scale_source='base_logit_scale'")
        for name in ("region_temperature", "logit_scale"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ConfigError(f"{name}={value!r}", "pass a positive number")
        if self.dense_mode not in DENSE_MODES:
            raise ConfigError(f"dense_mode={self.dense_mode!r}", f"use one of {list(DENSE_MODES)}")
        if isinstance(self.logit_offset, bool) or not isinstance(self.logit_offset, (int, float)):
            raise ConfigError(f"logit_offset={self.logit_offset!r}", "pass a number (0 for the paper)")
        if self.negative_prompt not in NEGATIVE_PROMPTS:
            raise ConfigError(f"negative_prompt={self.negative_prompt!r}", f"use one of {list(NEGATIVE_PROMPTS)}")
        if self.negative_prompt == "image_threshold" and (self.n_ctx_neg is not None or self.ctx_init_neg):
            raise ConfigError("n_ctx_neg or ctx_init_neg was set with negative_prompt='image_threshold', which has "
                              "no negative prompt", "leave both unset, or choose negative_prompt 'class' or 'shared'")
        if self.class_token_ids is not None and len(self.class_token_ids) != len(self.class_names):
            raise ConfigError(f"{len(self.class_token_ids)} class_token_ids for {len(self.class_names)} class names",
                              "leave class_token_ids empty: they are filled from the tokenizer at injection")
        if self.asl_clip < 0 or self.asl_clip >= 1 or self.loss_weight <= 0:
            raise ConfigError(f"asl_clip={self.asl_clip}, loss_weight={self.loss_weight}",
                              "use 0 <= asl_clip < 1 and a positive loss_weight")


def check_class_names(names) -> None:
    """Refuse an empty class list, empty names and duplicates (`ConfigError`)."""
    if len(names) == 0:
        raise ConfigError("the class list is empty", "pass at least one class name")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"class name {name!r} is empty or not a string", "pass non-empty strings")
    seen, duplicates = set(), []
    for name in names:
        key = " ".join(name.lower().split())
        if key in seen:
            duplicates.append(name)
        seen.add(key)
    if duplicates:
        raise ConfigError(f"duplicate class names {sorted(set(duplicates))}",
                          "give every class one unique name (compared case- and space-insensitively)")


__all__ = ["DualCoOpConfig", "extend_peft_type", "check_class_names", "PEFT_TYPE_NAME", "PEFT_METHOD_NAME",
           "TARGET_MODULE", "SCALE_SOURCES", "DENSE_MODES", "NEGATIVE_PROMPTS", "SHIPPED_TEACHER_PREFIX"]
