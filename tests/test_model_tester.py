"""The shared model checks pass on a correct toy model and fail on broken ones."""

# no `from __future__ import annotations`: transformers reads `config: ToyTesterConfig` as a class, not a string
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from model_tester import (
    EffhubModelTesterMixin,
    check_batch_equivalence,
    check_init_weights_covers_every_tensor,
    check_meta_load_restores_buffers,
    check_missing_weights_load,
    check_return_dict_equivalence,
    check_training_lowers_loss,
)
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple


class ToyTesterConfig(PreTrainedConfig):
    """Configuration of the toy model the mixin is tested on."""

    model_type = "effhub_toy_tester"
    hidden_size: int = 8
    num_labels: int = 3
    initializer_range: float = 0.02


@dataclass
class ToyTesterOutput(ModelOutput):
    """Output of the toy model."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: torch.Tensor | None = None


class ToyTesterModel(PreTrainedModel):
    """A toy model with a custom Parameter and a non-persistent buffer, both set in `_init_weights`."""

    config: ToyTesterConfig
    main_input_name = "inputs"

    def __init__(self, config: ToyTesterConfig):
        super().__init__(config)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size)
        self.head = nn.Linear(config.hidden_size, config.num_labels)
        self.gate = nn.Parameter(torch.empty(config.hidden_size))
        self.register_buffer("offsets", torch.empty(config.num_labels), persistent=False)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, ToyTesterModel):
            init.ones_(module.gate)
            init.copy_(module.offsets, torch.linspace(-1.0, 1.0, module.offsets.numel()))

    @can_return_tuple
    def forward(self, inputs, labels=None, return_dict=None):
        hidden = self.norm(torch.relu(self.proj(inputs)) * self.gate)
        logits = self.head(hidden) + self.offsets
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return ToyTesterOutput(loss=loss, logits=logits, hidden_states=hidden)


class ToyForgetfulModel(ToyTesterModel):
    """Broken on purpose: `_init_weights` forgets the custom parameter `gate`."""

    @torch.no_grad()
    def _init_weights(self, module):
        PreTrainedModel._init_weights(self, module)
        if isinstance(module, ToyTesterModel):
            init.copy_(module.offsets, torch.linspace(-1.0, 1.0, module.offsets.numel()))


class ToyForgetfulBufferModel(ToyTesterModel):
    """Broken on purpose: `_init_weights` forgets the non-persistent buffer `offsets`."""

    @torch.no_grad()
    def _init_weights(self, module):
        PreTrainedModel._init_weights(self, module)
        if isinstance(module, ToyTesterModel):
            init.ones_(module.gate)


class ToyBatchMixingModel(ToyTesterModel):
    """Broken on purpose: normalises over the batch, so a row depends on the other rows."""

    @can_return_tuple
    def forward(self, inputs, labels=None, return_dict=None):
        output = super().forward(inputs, labels=labels)
        return ToyTesterOutput(
            loss=output.loss, logits=output.logits - output.logits.mean(0), hidden_states=output.hidden_states
        )


AutoConfig.register(ToyTesterConfig.model_type, ToyTesterConfig, exist_ok=True)
AutoModel.register(ToyTesterConfig, ToyTesterModel, exist_ok=True)


class TestToyModel(EffhubModelTesterMixin):
    model_class = ToyTesterModel
    auto_class = AutoModel
    output_key = ("logits", "hidden_states")

    def get_config(self):
        return ToyTesterConfig(hidden_size=8, num_labels=3)

    def get_inputs(self, batch_size):
        return {"inputs": torch.randn(batch_size, 8), "labels": torch.randint(0, 3, (batch_size,))}


class _Broken(TestToyModel):
    """Not collected (no Test prefix): the same inputs, another model class."""

    def __init__(self, model_class):
        self.model_class = model_class


def test_forgotten_parameter_fails_init_check(tmp_path):
    tester = _Broken(ToyForgetfulModel)
    with pytest.raises(AssertionError, match="gate"):
        check_init_weights_covers_every_tensor(tester)
    with pytest.raises(AssertionError, match="gate"):
        check_missing_weights_load(tester, tmp_path)


def test_forgotten_buffer_fails_init_and_meta_checks(tmp_path):
    tester = _Broken(ToyForgetfulBufferModel)
    with pytest.raises(AssertionError, match="offsets"):
        check_init_weights_covers_every_tensor(tester)
    # the buffer is never saved, so from_pretrained (built on meta) cannot restore it from the checkpoint
    with pytest.raises(AssertionError, match="offsets"):
        check_meta_load_restores_buffers(tester, tmp_path)


def test_batch_mixing_fails_batch_check():
    with pytest.raises(AssertionError, match="batch row"):
        check_batch_equivalence(_Broken(ToyBatchMixingModel))


def test_untrainable_model_fails_training_check():
    tester = _Broken(ToyTesterModel)
    tester.learning_rate = 0.0
    with pytest.raises(AssertionError, match="did not lower the loss"):
        check_training_lowers_loss(tester)


def test_model_without_tuple_support_fails_return_dict_check():
    class NoTupleModel(ToyTesterModel):
        def forward(self, inputs, labels=None, return_dict=None):  # ignores return_dict
            return ToyTesterOutput(logits=self.head(inputs))

    with pytest.raises(AssertionError, match="not a tuple"):
        check_return_dict_equivalence(_Broken(NoTupleModel))
