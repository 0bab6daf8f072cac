"""Configuration of effhub's tiny reference classifier (the foundation demo's model, and the template of a method)."""

from __future__ import annotations

from transformers import PreTrainedConfig

from ...errors import ConfigError
from ..loading import CheckedConfigMixin, check_field, check_list


class EffhubTinyConfig(CheckedConfigMixin, PreTrainedConfig):
    r"""Configuration of [`EffhubTinyForImageClassification`], a two-layer convolutional classifier.

    It exists to exercise effhub's infrastructure end to end (training, evaluation, cards, the local hub) on a model
    small enough to train in seconds, and to show the shape every method folder follows.

    Args:
        num_channels (`int`, *optional*, defaults to 3): channels of the input images.
        image_size (`int`, *optional*, defaults to 16): side of the square input images.
        hidden_size (`int`, *optional*, defaults to 32): channels of the convolutional features.
        num_labels (`int`, *optional*, defaults to 4): number of classes.
        logit_scale_init (`float`, *optional*, defaults to 1.0): initial value of the learned logit scale.
        image_mean (`list[float]`, *optional*): per-channel mean subtracted inside the model (a buffer).
        initializer_range (`float`, *optional*, defaults to 0.02): std of the normal init of conv and linear weights.

    Example:
    ```python
    >>> from effhub.models.tiny import EffhubTinyConfig, EffhubTinyForImageClassification
    >>> model = EffhubTinyForImageClassification(EffhubTinyConfig(num_labels=4))
    ```
    """

    model_type = "effhub_tiny"

    def __init__(
        self,
        num_channels: int = 3,
        image_size: int = 16,
        hidden_size: int = 32,
        num_labels: int | None = None,
        logit_scale_init: float = 1.0,
        image_mean: list[float] | None = None,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.num_channels = check_field("EffhubTinyConfig", "num_channels", num_channels, "int", 1)
        self.image_size = check_field("EffhubTinyConfig", "image_size", image_size, "int", 1)
        self.hidden_size = check_field("EffhubTinyConfig", "hidden_size", hidden_size, "int", 1)
        self.logit_scale_init = check_field("EffhubTinyConfig", "logit_scale_init", logit_scale_init, "float")
        self.image_mean = check_list("EffhubTinyConfig", "image_mean", image_mean, "float") if image_mean is not None \
            else [0.5] * num_channels
        self.initializer_range = check_field("EffhubTinyConfig", "initializer_range", initializer_range, "float", 0.0)
        if num_labels is not None:
            num_labels = check_field("EffhubTinyConfig", "num_labels", num_labels, "int", 1)
        if len(self.image_mean) != num_channels:
            raise ConfigError(
                f"image_mean has {len(self.image_mean)} values but num_channels is {num_channels}",
                "give one mean value per input channel",
            )
        for name in ("num_channels", "image_size", "hidden_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}", f"set {name} to at least 1")
        if num_labels is None and "id2label" not in kwargs:
            num_labels = 4
        if num_labels is not None:
            kwargs["num_labels"] = num_labels  # a saved config carries id2label instead, which must win
        super().__init__(**kwargs)


__all__ = ["EffhubTinyConfig"]
