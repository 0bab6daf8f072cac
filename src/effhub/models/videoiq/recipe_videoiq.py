"""VideoIQ's recipe: data, model and the three training stages (`recipes/<name>.yaml`).

Which checkpoint feeds which stage (the authors' README is ambiguous here: its policy command passes the
full-precision checkpoint while its text says the any-precision one):

1. `full_precision`: the recognition network from scratch, unquantised -> **the FP network** (also the frozen
   distillation teacher of stages 2 and 3; it is not part of the pushed model). `policy_backbone`: the policy's frame
   encoder pre-trained as a frame classifier.
2. `any_precision`: starts from **the FP network's weights** (every bit-width's BatchNorm from the FP one); trains
   every bit-width on every batch with distillation from the frozen FP network -> **the any-precision network**.
3. `policy`: **the any-precision network, frozen**, plus the policy network whose encoder starts from the
   `policy_backbone` stage; only the policy is trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VideoIQDataRecipe:
    """Generated clips (`dataset: clips`) or a frame-folder data set; clip counts and `clips_version` (the frozen
    generator version, `effhub.data.video.clips.CLIP_VERSIONS`; 1 for runs recorded before version 2) apply to
    generated data."""

    train_clips: int = 1024
    test_clips: int = 512
    num_frames: int = 8
    image_size: int = 32
    evidence_fraction: float = 0.5
    clips_version: int = 1


@dataclass
class VideoIQModelRecipe:
    """The model (see `VideoIQConfig` for each field)."""

    backbone_depth: int = 50
    base_width: int = 64
    stem_stride: int = 4
    bit_width_family: list[int] = field(default_factory=lambda: [32, 4, 2])
    skip_list: list[int] = field(default_factory=lambda: [1])
    dropout: float = 0.5
    pact_init: float = 2.0
    policy_backbone: str = "mobilenet_v2"
    policy_width_multiplier: float = 1.0
    policy_image_size: int = 84
    policy_feature_size: int = 1280
    policy_hidden_size: int = 512
    policy_dropout: float = 0.8
    policy_aux_classifier: bool = True
    policy_bit_width: int = 32
    policy_keeps_a_frame: bool = True
    temperature_init: float = 5.0
    temperature_decay: float = 0.956


@dataclass
class VideoIQStageRecipe:
    """One supervised stage: steps, batch size and an SGD (momentum 0.9) or AdamW optimiser with a cosine schedule."""

    steps: int = 100
    batch_size: int = 8
    optimizer: str = "sgd"
    lr: float = 0.01
    weight_decay: float = 5e-4


@dataclass
class VideoIQAnyPrecisionRecipe(VideoIQStageRecipe):
    """Stage 2: every bit-width on every batch, distilled from the FP network; per-bit PACT learning rates and weight
    decays (highest bit-width first; the paper decays the 2-bit clip values hard)."""

    kd_weight: float = 1.0
    pact_lr: list[float] = field(default_factory=lambda: [0.1, 0.1, 0.01])
    pact_weight_decay: list[float] = field(default_factory=lambda: [5e-4, 5e-4, 6e-2])


@dataclass
class VideoIQPolicyRecipe(VideoIQStageRecipe):
    """Stage 3: the policy over the frozen any-precision network. `lr` trains the LSTM, the action head and the
    auxiliary classifier, `encoder_lr` the frame encoder. The temperature decays once per epoch (`epoch_steps`;
    0 = one pass over the training clips). `efficiency_codebook`: the paper's cost per action (`"paper"`,
    min(b, 8)^2 / 64) or the measured BitOPs per frame relative to the top bit-width (`"bitops"`). `kd_frames`:
    what the distillation compares, the clip's logits with the full-precision network's on every frame (`"all"`,
    the paper's) or, with the skip decisions held fixed, the kept frames' logits with the full-precision network's on
    the same frames (`"executed"`, effhub's: distillation then prices only the bit-width of each kept frame and
    leaves the choice of which frames to skip to the cross-entropy and the efficiency loss). `ce_temperature`: the
    policy's cross-entropy reads the clip logits divided by it (1: the paper's plain cross-entropy). A frozen
    recognition network that is certain of nearly every training clip (cross-entropy ~0.002 on the width-32 demo
    network) gives the same loss whichever frames are kept, so the policy only hears the efficiency loss and skips
    every kind of frame alike; softened logits (e.g. 8) make a clip's loss rise when its evidence frames go and fall
    when uninformative frames go, as it does on a network that is not yet certain (effhub's addition)."""

    lr: float = 0.01
    encoder_lr: float = 1e-5
    epoch_steps: int = 0
    kd_weight: float = 1.0
    kd_frames: str = "all"
    policy_weight: float = 1.0
    efficiency_weight: float = 0.16
    efficiency_codebook: str = "paper"
    ce_temperature: float = 1.0
    balance_weight: float = 1.0
    entropy_weight: float = 0.1


@dataclass
class VideoIQRecipe:
    """A VideoIQ recipe (`effhub/models/videoiq/recipes/<name>.yaml`)."""

    description: str = ""
    seed: int = 0
    dataset: str = "clips"
    dataset_options: dict = field(default_factory=dict)
    data: VideoIQDataRecipe = field(default_factory=VideoIQDataRecipe)
    model: VideoIQModelRecipe = field(default_factory=VideoIQModelRecipe)
    full_precision: VideoIQStageRecipe = field(default_factory=VideoIQStageRecipe)
    policy_backbone: VideoIQStageRecipe = field(default_factory=VideoIQStageRecipe)
    any_precision: VideoIQAnyPrecisionRecipe = field(default_factory=VideoIQAnyPrecisionRecipe)
    policy: VideoIQPolicyRecipe = field(default_factory=VideoIQPolicyRecipe)
    eval_batch_size: int = 32

    def model_config(self, num_labels: int, id2label: dict | None = None):
        """The `VideoIQConfig` of this recipe."""
        from dataclasses import asdict

        from .configuration_videoiq import VideoIQConfig

        values = asdict(self.model)
        labels = {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}} if id2label else \
            {"num_labels": num_labels}
        return VideoIQConfig(num_frames=self.data.num_frames, image_size=self.data.image_size, **values, **labels)


__all__ = [
    "VideoIQAnyPrecisionRecipe",
    "VideoIQDataRecipe",
    "VideoIQModelRecipe",
    "VideoIQPolicyRecipe",
    "VideoIQRecipe",
    "VideoIQStageRecipe",
]
