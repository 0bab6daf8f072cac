"""effhub's tiny reference classifier: a conv net with a learned logit scale and a constant normalisation buffer.

The custom parameter and the non-persistent buffer are deliberate: they are exactly what transformers v5 leaves
uninitialised on the meta device unless `_init_weights` handles them, so this model keeps the shared model tests honest.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ..loading import CheckedLoadingMixin
from .configuration_tiny import EffhubTinyConfig


@dataclass
class EffhubTinyOutput(ModelOutput):
    """Output of [`EffhubTinyForImageClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): cross-entropy, when `labels` are given.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`): class scores.
        pooled_features (`torch.FloatTensor` of shape `(batch_size, hidden_size)`): globally pooled features.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    pooled_features: torch.FloatTensor | None = None


class EffhubTinyPreTrainedModel(CheckedLoadingMixin, PreTrainedModel):
    """Weight initialisation and loading for the tiny classifier."""

    config: EffhubTinyConfig
    base_model_prefix = "tiny"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, EffhubTinyForImageClassification):
            init.constant_(module.logit_scale, self.config.logit_scale_init)
            init.copy_(module.image_mean, torch.tensor(self.config.image_mean).view(1, -1, 1, 1))


class EffhubTinyForImageClassification(EffhubTinyPreTrainedModel):
    """Two 3x3 convolutions, global average pooling and a linear classifier scaled by a learned logit scale."""

    def __init__(self, config: EffhubTinyConfig):
        super().__init__(config)
        self.conv1 = nn.Conv2d(config.num_channels, config.hidden_size, 3, padding=1)
        self.conv2 = nn.Conv2d(config.hidden_size, config.hidden_size, 3, padding=1, stride=2)
        self.norm = nn.BatchNorm2d(config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.logit_scale = nn.Parameter(torch.empty(()))
        # recomputed from the config on every load, never saved
        self.register_buffer("image_mean", torch.empty(1, config.num_channels, 1, 1), persistent=False)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.FloatTensor,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> EffhubTinyOutput:
        r"""Classify `pixel_values` of shape `(batch_size, num_channels, image_size, image_size)`.

        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*): class ids; when given, `loss` is returned.
        """
        hidden = torch.relu(self.conv1(pixel_values - self.image_mean))
        hidden = torch.relu(self.norm(self.conv2(hidden)))
        pooled = hidden.mean(dim=(2, 3))
        logits = self.classifier(pooled) * self.logit_scale
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return EffhubTinyOutput(loss=loss, logits=logits, pooled_features=pooled)


__all__ = ["EffhubTinyOutput", "EffhubTinyPreTrainedModel", "EffhubTinyForImageClassification"]
