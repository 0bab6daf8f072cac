"""Configuration of VideoIQ (Sun et al., "Dynamic Network Quantization for Efficient Video Inference", ICCV 2021,
arXiv 2108.10394): an any-precision TSN-style ResNet over the frames of a clip and a light policy network that picks,
per frame, one bit-width of the family or a skip."""

from __future__ import annotations

from transformers import PreTrainedConfig

from ...errors import ConfigError
from ..loading import CheckedConfigMixin, check_field, check_list

RESNET_STAGE_BLOCKS = {18: [2, 2, 2, 2], 50: [3, 4, 6, 3]}
"""Residual blocks per stage of the supported recognition-network depths (BasicBlock for 18, Bottleneck for 50)."""
POLICY_BACKBONES = ("mobilenet_v2", "small")
FULL_PRECISION_BITS = 32
"""A bit-width of 32 is the paper's full precision (a 2^32 - 1 level grid: floating point in practice)."""


class VideoIQConfig(CheckedConfigMixin, PreTrainedConfig):
    r"""Configuration of [`VideoIQForVideoClassification`].

    Args:
        num_frames (`int`, *optional*, defaults to 16): frames per clip (T, the paper's `--groups`).
        image_size (`int`, *optional*, defaults to 224): side of the square frames the recognition network reads.
        num_channels (`int`, *optional*, defaults to 3): channels per frame.
        backbone_depth (`int`, *optional*, defaults to 50): ResNet depth of the recognition network, 18 or 50.
        base_width (`int`, *optional*, defaults to 64): channels of the stem and first stage (stages use
            `base_width * (1, 2, 4, 8)`); small values give configs that train in seconds on a CPU.
        stem_stride (`int`, *optional*, defaults to 4): total stride of the full-precision stem (4 = ImageNet's 7x7
            stride-2 conv and max pool; 1 = a 3x3 conv, for small frames).
        bit_width_family (`list[int]`, *optional*, defaults to `[32, 4, 2]`): the precisions of the any-precision
            network, highest first; weights are quantised at the highest and truncated for the others.
        skip_list (`list[int]`, *optional*, defaults to `[1]`): skip actions; "skip s" skips the current frame and
            the next s - 1.
        dropout (`float`, *optional*, defaults to 0.5): dropout before the classifier.
        pact_init (`float`, *optional*, defaults to 2.0): initial PACT clipping value of every bit-width.
        policy_backbone (`str`, *optional*, defaults to `"mobilenet_v2"`): the policy's frame encoder, the paper's
            MobileNetV2 or `"small"` (three inverted-residual stages) for small configs.
        policy_width_multiplier (`float`, *optional*, defaults to 1.0): MobileNetV2 width multiplier.
        policy_image_size (`int`, *optional*, defaults to 84): side the frames are downsampled to for the policy.
        policy_feature_size (`int`, *optional*, defaults to 1280): channels of the policy encoder's last 1x1 conv.
        policy_hidden_size (`int`, *optional*, defaults to 512): hidden size of the policy LSTM cell.
        policy_dropout (`float`, *optional*, defaults to 0.8): dropout on the pooled policy features.
        policy_aux_classifier (`bool`, *optional*, defaults to `True`): an auxiliary classifier on the frame-averaged
            LSTM states (`--is_policy_pred`), trained with the policy's cross-entropy loss.
        policy_bit_width (`int`, *optional*, defaults to 32): precision of the policy network (the authors'
            `--p_bit`; 32 = full precision, their default). Below 32, every layer of the policy but its first
            convolution (full precision, as in the authors' BitOPs count) runs with weights and inputs quantised to
            this many bits: the encoder's convolutions, the LSTM cell's two products, the action head and the
            auxiliary classifier.
        policy_keeps_a_frame (`bool`, *optional*, defaults to `True`): at inference, a clip whose every frame the
            policy would skip keeps one: the frame it was least inclined to skip, at its most likely bit-width (a
            prediction from no frame is the classifier's bias alone). `False`: the paper's rule, every frame may go.
            Training samples the policy's actions unchanged.
        temperature_init (`float`, *optional*, defaults to 5.0): initial Gumbel-softmax temperature.
        temperature_decay (`float`, *optional*, defaults to 0.956): temperature factor per policy epoch.
        num_labels (`int`, *optional*, defaults to 200): classes.
        initializer_range (`float`, *optional*, defaults to 0.02): std of the normal init of linear layers.

    Example:
    ```python
    >>> from effhub.models.videoiq import VideoIQConfig, VideoIQForVideoClassification
    >>> config = VideoIQConfig(num_frames=8, image_size=32, backbone_depth=18, base_width=8, stem_stride=1,
    ...                        policy_backbone="small", policy_image_size=16, num_labels=8)
    >>> model = VideoIQForVideoClassification(config)
    ```
    """

    model_type = "effhub_videoiq"

    def __init__(
        self,
        num_frames: int = 16,
        image_size: int = 224,
        num_channels: int = 3,
        backbone_depth: int = 50,
        base_width: int = 64,
        stem_stride: int = 4,
        bit_width_family: list[int] | None = None,
        skip_list: list[int] | None = None,
        dropout: float = 0.5,
        pact_init: float = 2.0,
        policy_backbone: str = "mobilenet_v2",
        policy_width_multiplier: float = 1.0,
        policy_image_size: int = 84,
        policy_feature_size: int = 1280,
        policy_hidden_size: int = 512,
        policy_dropout: float = 0.8,
        policy_aux_classifier: bool = True,
        policy_bit_width: int = FULL_PRECISION_BITS,
        policy_keeps_a_frame: bool = True,
        temperature_init: float = 5.0,
        temperature_decay: float = 0.956,
        num_labels: int | None = None,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        name = "VideoIQConfig"
        self.num_frames = check_field(name, "num_frames", num_frames, "int", 1)
        self.image_size = check_field(name, "image_size", image_size, "int", 8)
        self.num_channels = check_field(name, "num_channels", num_channels, "int", 1)
        self.backbone_depth = check_field(name, "backbone_depth", backbone_depth, "int",
                                          choices=tuple(RESNET_STAGE_BLOCKS))
        self.base_width = check_field(name, "base_width", base_width, "int", 1)
        self.stem_stride = check_field(name, "stem_stride", stem_stride, "int", choices=(1, 2, 4))
        family = check_list(name, "bit_width_family", [32, 4, 2] if bit_width_family is None else bit_width_family,
                            "int", 1)
        if not family or any(bits > FULL_PRECISION_BITS for bits in family) or len(set(family)) != len(family):
            raise ConfigError(f"{name} field 'bit_width_family' is {family}",
                              "give distinct bit-widths between 1 and 32, e.g. [32, 4, 2] or [8, 4, 2]")
        if family != sorted(family, reverse=True):
            raise ConfigError(f"{name} field 'bit_width_family' is {family}, not highest first",
                              f"order it from the highest precision down: {sorted(family, reverse=True)}")
        self.bit_width_family = family
        skips = check_list(name, "skip_list", [1] if skip_list is None else skip_list, "int", 1)
        if len(set(skips)) != len(skips):
            raise ConfigError(f"{name} field 'skip_list' is {skips}", "list each skip length once, e.g. [1]")
        self.skip_list = skips
        self.dropout = check_field(name, "dropout", dropout, "float", 0.0, 1.0)
        self.pact_init = check_field(name, "pact_init", pact_init, "float", 0.0, exclusive_minimum=True)
        self.policy_backbone = check_field(name, "policy_backbone", policy_backbone, "str", choices=POLICY_BACKBONES)
        self.policy_width_multiplier = check_field(name, "policy_width_multiplier", policy_width_multiplier, "float",
                                                   0.0, exclusive_minimum=True)
        self.policy_image_size = check_field(name, "policy_image_size", policy_image_size, "int", 8)
        self.policy_feature_size = check_field(name, "policy_feature_size", policy_feature_size, "int", 1)
        self.policy_hidden_size = check_field(name, "policy_hidden_size", policy_hidden_size, "int", 1)
        self.policy_dropout = check_field(name, "policy_dropout", policy_dropout, "float", 0.0, 1.0)
        self.policy_aux_classifier = check_field(name, "policy_aux_classifier", policy_aux_classifier, "bool")
        self.policy_bit_width = check_field(name, "policy_bit_width", policy_bit_width, "int", 2,
                                            FULL_PRECISION_BITS)
        self.policy_keeps_a_frame = check_field(name, "policy_keeps_a_frame", policy_keeps_a_frame, "bool")
        self.temperature_init = check_field(name, "temperature_init", temperature_init, "float", 0.0,
                                            exclusive_minimum=True)
        self.temperature_decay = check_field(name, "temperature_decay", temperature_decay, "float", 0.0, 1.0,
                                             exclusive_minimum=True)
        self.initializer_range = check_field(name, "initializer_range", initializer_range, "float", 0.0)
        if self.image_size % (self.stem_stride * 8):
            raise ConfigError(f"{name}: image_size={self.image_size} is not a multiple of the network's total stride "
                              f"{self.stem_stride * 8} (stem stride {self.stem_stride} x 8)",
                              f"use an image_size that is a multiple of {self.stem_stride * 8}")
        if num_labels is not None:
            num_labels = check_field(name, "num_labels", num_labels, "int", 1)
        if num_labels is None and "id2label" not in kwargs:
            num_labels = 200
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
        super().__init__(**kwargs)

    @property
    def num_precisions(self) -> int:
        """Bit-widths in the family (the first `num_precisions` policy actions)."""
        return len(self.bit_width_family)

    @property
    def num_actions(self) -> int:
        """Policy actions per frame: one per bit-width, then one per skip length (A = P + S)."""
        return len(self.bit_width_family) + len(self.skip_list)

    @property
    def policy_precision(self) -> str:
        """The policy network's precision in words."""
        if self.policy_bit_width >= FULL_PRECISION_BITS:
            return "full precision"
        return f"{self.policy_bit_width} bits (its stem at full precision)"

    @property
    def action_names(self) -> list[str]:
        """Readable name of every action, in action order (`"32-bit"`, ..., `"skip 1"`)."""
        return [f"{bits}-bit" for bits in self.bit_width_family] + [f"skip {s}" for s in self.skip_list]


__all__ = ["FULL_PRECISION_BITS", "POLICY_BACKBONES", "RESNET_STAGE_BLOCKS", "VideoIQConfig"]
