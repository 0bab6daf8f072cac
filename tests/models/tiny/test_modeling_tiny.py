"""The tiny reference model runs the shared model checks."""

import pytest
import torch
from transformers import AutoModel

from effhub.errors import ConfigError
from effhub.models.tiny import EffhubTinyConfig, EffhubTinyForImageClassification
from tests.model_tester import EffhubModelTesterMixin


class TestEffhubTinyModel(EffhubModelTesterMixin):
    model_class = EffhubTinyForImageClassification
    auto_class = AutoModel
    output_key = ("logits",)

    def get_config(self):
        return EffhubTinyConfig(hidden_size=8, num_labels=3, image_size=8, logit_scale_init=2.0)

    def get_inputs(self, batch_size):
        generator = torch.Generator().manual_seed(batch_size)
        return {
            "pixel_values": torch.rand(batch_size, 3, 8, 8, generator=generator),
            "labels": torch.randint(0, 3, (batch_size,), generator=generator),
        }


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="image_mean"):
        EffhubTinyConfig(num_channels=3, image_mean=[0.5])
    with pytest.raises(ConfigError, match="hidden_size"):
        EffhubTinyConfig(hidden_size=0)
