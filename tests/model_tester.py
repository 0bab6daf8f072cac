"""The checks every effhub model class runs: a re-implementation of the relevant parts of transformers'
``ModelTesterMixin`` (tests/test_modeling_common.py in the transformers repository, not shipped in the wheel).

A test class mixes in :class:`EffhubModelTesterMixin`, sets ``model_class`` and implements ``get_config()`` and
``get_inputs(batch_size)``::

    class TestAdaShareModel(EffhubModelTesterMixin):
        model_class = AdaShareModel
        auto_class = AutoModel
        output_key = ("logits",)

        def get_config(self):
            return AdaShareConfig(...)

        def get_inputs(self, batch_size):
            return {"pixel_values": torch.randn(batch_size, 3, 16, 16)}

        def get_loss(self, outputs, inputs):  # optional: defaults to `outputs.loss`
            return outputs.logits.square().mean()

Every check is also a plain function (``check_save_load(tester, tmp_path)``...) so a test can run one directly, e.g.
to prove that a broken model fails it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from transformers import AutoConfig
from transformers.utils import ModelOutput
from transformers.utils import logging as hf_logging


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load report and progress bars (missing weights are expected in these checks)."""
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        hf_logging.enable_progress_bar()


def flatten_tensors(value: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten a ModelOutput / dict / tuple / list tree into `{dotted.path: tensor}` (non-tensors dropped).

    Positions in tuples are numbered, so `flatten_tensors(out.to_tuple())` and `flatten_tensors(out)` differ in keys
    but not in the order of the tensors.
    """
    flat: dict[str, torch.Tensor] = {}
    if isinstance(value, torch.Tensor):
        flat[prefix or "."] = value
    elif isinstance(value, Mapping):  # ModelOutput is an OrderedDict
        for key, item in value.items():
            flat.update(flatten_tensors(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        for index, item in enumerate(value):
            flat.update(flatten_tensors(item, f"{prefix}.{index}" if prefix else str(index)))
    return flat


def _select_outputs(tester: Any, outputs: Any) -> dict[str, torch.Tensor]:
    """The tensors a check compares: the fields named by `tester.output_key`, or every tensor of the output."""
    keys = tester.output_key
    if keys is None:
        return flatten_tensors(outputs)
    if isinstance(keys, str):
        keys = (keys,)
    selected: dict[str, torch.Tensor] = {}
    for key in keys:
        item = outputs.get(key) if isinstance(outputs, Mapping) else getattr(outputs, key, None)
        if item is None:
            raise AssertionError(f"the model output has no '{key}' (output_key {keys!r})")
        selected.update(flatten_tensors(item, key))
    if not selected:
        raise AssertionError(f"output_key {keys!r} selected no tensor in the model output")
    return selected


def assert_tensors_close(
    expected: Mapping[str, torch.Tensor], actual: Mapping[str, torch.Tensor], atol: float, what: str
) -> None:
    """Assert two `{path: tensor}` maps hold the same keys and tensors equal within `atol` (NaN never equal)."""
    assert list(expected) == list(actual), f"{what}: output keys differ: {list(expected)} vs {list(actual)}"
    for key in expected:
        a, b = expected[key].detach().float(), actual[key].detach().float()
        assert a.shape == b.shape, f"{what}: '{key}' shape {tuple(a.shape)} vs {tuple(b.shape)}"
        assert torch.isfinite(a).all() and torch.isfinite(b).all(), f"{what}: '{key}' holds non-finite values"
        difference = (a - b).abs().max().item() if a.numel() else 0.0
        assert difference <= atol, f"{what}: '{key}' differs by {difference:.3g} (> {atol:g})"


def _inputs(tester: Any, batch_size: int) -> dict[str, Any]:
    # seeded so that the two runs compared by a check see the same inputs
    torch.manual_seed(tester.seed)
    return tester.get_inputs(batch_size)


def _fresh_model(tester: Any, seed: int | None = None) -> torch.nn.Module:
    torch.manual_seed(tester.seed if seed is None else seed)
    return tester.model_class(tester.get_config())


def _run(model: torch.nn.Module, inputs: Mapping[str, Any], **kwargs: Any) -> Any:
    with torch.no_grad():
        return model(**inputs, **kwargs)


def _named_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, non-persistent buffers included, by qualified name."""
    tensors = {name: p for name, p in model.named_parameters(remove_duplicate=False)}
    tensors.update({name: b for name, b in model.named_buffers(remove_duplicate=False) if b is not None})
    return tensors


def _exempt(tester: Any, name: str) -> bool:
    return any(name == key or name.startswith(key + ".") or name.endswith("." + key) for key in tester.init_exempt_keys)


def _slice_inputs(inputs: Mapping[str, Any], batch_size: int, index: int) -> dict[str, Any]:
    """Row `index` of every batched input (tensors and lists whose first dimension is the batch size)."""
    sliced = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch_size:
            sliced[key] = value[index : index + 1]
        elif isinstance(value, list) and len(value) == batch_size:
            sliced[key] = value[index : index + 1]
        else:
            sliced[key] = value
    return sliced


# --------------------------------------------------------------------------------------------------------------------
# the checks


def check_save_load(tester: Any, tmp_path: Path) -> None:
    """`save_pretrained` then `from_pretrained` gives equal outputs (eval mode) and writes safetensors + config."""
    model = _fresh_model(tester).eval()
    inputs = _inputs(tester, tester.batch_size)
    expected = _select_outputs(tester, _run(model, inputs))
    save_dir = tmp_path / "saved"
    with quiet_transformers():
        model.save_pretrained(save_dir)
        files = set(os.listdir(save_dir))
        assert "config.json" in files, f"save_pretrained wrote no config.json: {sorted(files)}"
        assert any(f.endswith(".safetensors") for f in files), f"save_pretrained wrote no safetensors: {sorted(files)}"
        reloaded = tester.model_class.from_pretrained(save_dir)
    assert type(reloaded) is tester.model_class
    assert not reloaded.training, "from_pretrained must return a model in eval mode"
    assert_tensors_close(expected, _select_outputs(tester, _run(reloaded, inputs)), tester.atol, "save/load")


def _initialised_from_nan(tester: Any) -> torch.nn.Module:
    """The model built on meta, materialised with NaN in every floating tensor, then run through `init_weights()`."""
    config = tester.get_config()
    with torch.device("meta"):
        model = tester.model_class(config)
    model.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in _named_tensors(model).values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    for module in model.modules():
        if "_is_hf_initialized" in module.__dict__:
            del module._is_hf_initialized
    torch.manual_seed(tester.seed)
    model.init_weights()
    return model


def check_init_weights_covers_every_tensor(tester: Any) -> None:
    """`_init_weights` writes every parameter and buffer (non-persistent ones included).

    transformers v5 builds a model on the meta device and runs `_init_weights` only for the tensors a checkpoint
    lacks; a tensor `_init_weights` forgets comes back as uninitialised memory. The model is built on meta,
    materialised with NaN in every tensor, then initialised: any NaN left names a tensor `_init_weights` misses.
    """
    model = _initialised_from_nan(tester)
    missed = [
        name
        for name, tensor in _named_tensors(model).items()
        if tensor.is_floating_point() and not _exempt(tester, name) and torch.isnan(tensor).any()
    ]
    assert not missed, (
        f"{tester.model_class.__name__}._init_weights leaves these tensors uninitialised: {missed}. "
        "Initialise them in _init_weights with transformers.initialization (non-persistent buffers with init.copy_)"
    )


def check_missing_weights_load(tester: Any, tmp_path: Path) -> None:
    """Loading a checkpoint with every weight missing gives finite values equal to the documented initial values.

    Deterministic inits (a tensor equal across two fresh constructions with different seeds: constants, buffers)
    must be equal; random inits must have the same mean and std as a fresh model's within a tolerance scaled by
    the tensor's size. `tester.init_exempt_keys` lists documented exceptions.
    """
    check_init_weights_covers_every_tensor(tester)
    config = tester.get_config()
    empty_dir = tmp_path / "no_weights"
    config.save_pretrained(empty_dir)
    save_file({}, str(empty_dir / "model.safetensors"), metadata={"format": "pt"})
    torch.manual_seed(tester.seed + 1)
    with quiet_transformers():
        loaded = tester.model_class.from_pretrained(empty_dir)
    reference = _named_tensors(_fresh_model(tester, tester.seed))
    other_seed = _named_tensors(_fresh_model(tester, tester.seed + 7))
    loaded_tensors = _named_tensors(loaded)
    assert set(loaded_tensors) == set(reference), "the loaded model's tensors differ from a fresh model's"
    problems = []
    for name, tensor in loaded_tensors.items():
        if _exempt(tester, name) or not tensor.is_floating_point():
            continue
        value, fresh = tensor.detach().float(), reference[name].detach().float()
        if not torch.isfinite(value).all():
            problems.append(f"{name}: non-finite values after loading without weights")
            continue
        if torch.equal(fresh, other_seed[name].detach().float()):
            if not torch.allclose(value, fresh, atol=tester.atol, rtol=0):
                problems.append(f"{name}: deterministic init differs from a fresh model's")
        elif value.numel() > 1:
            spread = fresh.std().item()
            mean_tol = tester.init_stat_sigmas * spread / math.sqrt(value.numel()) + 1e-6
            std_tol = tester.init_stat_sigmas * spread / math.sqrt(2 * value.numel()) + 1e-6
            if abs(value.mean().item() - fresh.mean().item()) > mean_tol:
                problems.append(f"{name}: mean {value.mean().item():.4g} vs fresh {fresh.mean().item():.4g}")
            if abs(value.std().item() - spread) > std_tol:
                problems.append(f"{name}: std {value.std().item():.4g} vs fresh {spread:.4g}")
    assert not problems, "loading with every weight missing gave wrong initial values:\n" + "\n".join(problems)


def check_meta_load_restores_buffers(tester: Any, tmp_path: Path) -> None:
    """A model built on the meta device has no values; `from_pretrained` of a saved model (also built on meta in v5)
    must restore every buffer, non-persistent ones (never saved) included, to its documented value: the value
    `_init_weights` gives it (compared with the NaN-sentinel model, so a forgotten buffer cannot pass by chance)."""
    config = tester.get_config()
    with torch.device("meta"):
        meta_model = tester.model_class(config)
    assert all(t.is_meta for t in _named_tensors(meta_model).values()), "a model built under meta holds real tensors"
    fresh = _fresh_model(tester)
    save_dir = tmp_path / "saved_for_meta"
    with quiet_transformers():
        fresh.save_pretrained(save_dir)
        loaded = tester.model_class.from_pretrained(save_dir)
    documented_buffers = dict(_initialised_from_nan(tester).named_buffers())
    for name, buffer in loaded.named_buffers():
        if _exempt(tester, name) or buffer is None:
            continue
        assert not buffer.is_meta, f"buffer {name} is still on the meta device after from_pretrained"
        if buffer.is_floating_point():
            assert torch.isfinite(buffer).all(), f"buffer {name} holds non-finite values after from_pretrained"
        assert torch.equal(buffer, documented_buffers[name]), (
            f"buffer {name} after from_pretrained differs from the value _init_weights documents for it"
        )


def check_return_dict_equivalence(tester: Any) -> None:
    """`return_dict=False` returns the same tensors, in the same order, as `ModelOutput.to_tuple()`."""
    model = _fresh_model(tester).eval()
    inputs = _inputs(tester, tester.batch_size)
    as_dict = _run(model, inputs, return_dict=True)
    as_tuple = _run(model, inputs, return_dict=False)
    assert isinstance(as_dict, ModelOutput), f"return_dict=True gave {type(as_dict).__name__}, not a ModelOutput"
    assert isinstance(as_tuple, tuple), f"return_dict=False gave {type(as_tuple).__name__}, not a tuple"
    assert_tensors_close(flatten_tensors(as_dict.to_tuple()), flatten_tensors(as_tuple), 0.0, "tuple vs dict")


def check_batch_equivalence(tester: Any) -> None:
    """Row i of a batched run equals the run on sample i alone (eval mode)."""
    model = _fresh_model(tester).eval()
    batch_size = tester.batch_size
    inputs = _inputs(tester, batch_size)
    batched = _select_outputs(tester, _run(model, inputs))
    batched_rows = {k: v for k, v in batched.items() if v.dim() > 0 and v.shape[0] == batch_size}
    assert batched_rows, "no output tensor has the batch size as first dimension"
    for index in range(batch_size):
        single = _select_outputs(tester, _run(model, _slice_inputs(inputs, batch_size, index)))
        expected = {k: v[index : index + 1] for k, v in batched_rows.items()}
        assert_tensors_close(expected, {k: single[k] for k in expected}, tester.batch_atol, f"batch row {index}")


def check_training_lowers_loss(tester: Any) -> None:
    """A few Adam steps on a fixed batch lower the loss."""
    model = _fresh_model(tester).train()
    inputs = _inputs(tester, tester.batch_size)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable, "the model has no trainable parameter"
    optimizer = torch.optim.Adam(trainable, lr=tester.learning_rate)

    def loss_now() -> torch.Tensor:
        torch.manual_seed(tester.seed)  # the same dropout masks / sampling at every step
        return tester.get_loss(model(**inputs), inputs)

    with torch.no_grad():
        initial = loss_now().item()
    for _ in range(tester.training_steps):
        optimizer.zero_grad()
        loss = loss_now()
        assert torch.isfinite(loss), f"training loss became {loss.item()}"
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = loss_now().item()
    assert final < initial, f"{tester.training_steps} Adam steps did not lower the loss: {initial:.5g} -> {final:.5g}"


def check_auto_class_round_trip(tester: Any, tmp_path: Path) -> None:
    """`AutoConfig` returns the config class and `auto_class.from_pretrained` the model class, with equal outputs."""
    model = _fresh_model(tester).eval()
    save_dir = tmp_path / "auto"
    with quiet_transformers():
        model.save_pretrained(save_dir)
        config = AutoConfig.from_pretrained(save_dir)
        assert type(config) is type(model.config), f"AutoConfig gave {type(config).__name__}"
        if tester.auto_class is None:
            return
        loaded = tester.auto_class.from_pretrained(save_dir)
    assert type(loaded) is tester.model_class, f"{tester.auto_class.__name__} gave {type(loaded).__name__}"
    inputs = _inputs(tester, tester.batch_size)
    expected = _select_outputs(tester, _run(model, inputs))
    assert_tensors_close(expected, _select_outputs(tester, _run(loaded, inputs)), tester.atol, "auto class")


def _comparable(config_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config_dict.items() if k not in {"transformers_version"}}


def check_config_round_trip(tester: Any, tmp_path: Path) -> None:
    """`to_dict`/`from_dict` and `save_pretrained`/`from_pretrained` keep the config; `model_type` is `effhub_*`."""
    config = tester.get_config()
    config_class = type(config)
    assert config_class.model_type.startswith("effhub_"), f"model_type '{config_class.model_type}' lacks 'effhub_'"
    assert tester.model_class.config_class is config_class, "model_class.config_class is not the config's class"
    original = _comparable(config.to_dict())
    assert _comparable(config_class.from_dict(copy.deepcopy(config.to_dict())).to_dict()) == original
    config.save_pretrained(tmp_path / "config")
    assert _comparable(config_class.from_pretrained(tmp_path / "config").to_dict()) == original
    model = _fresh_model(tester)
    assert model.config.model_type.startswith("effhub_")


class EffhubModelTesterMixin:
    """The common model checks, as pytest tests. Subclasses set the attributes below and implement `get_config()`
    and `get_inputs(batch_size)`.

    Attributes:
        model_class: the `PreTrainedModel` subclass under test.
        auto_class: the Auto class it is registered with (e.g. `transformers.AutoModel`); `None` skips that part.
        output_key: name(s) of the output fields compared (`None`: every tensor of the output).
        atol: tolerance of the save/load, auto class and missing-weights comparisons.
        batch_atol: tolerance of the batch-equivalence comparison.
        init_exempt_keys: documented exceptions to the init checks (parameter/buffer names or prefixes).
        init_stat_sigmas: how many standard errors the mean/std of a random init may differ by.
        batch_size, training_steps, learning_rate, seed: sizes of the runs.
    """

    model_class: type | None = None
    auto_class: type | None = None
    output_key: str | tuple[str, ...] | None = None
    atol: float = 1e-5
    batch_atol: float = 1e-5
    init_exempt_keys: tuple[str, ...] = ()
    init_stat_sigmas: float = 6.0
    batch_size: int = 3
    training_steps: int = 8
    learning_rate: float = 1e-2
    seed: int = 0

    def get_config(self):
        raise NotImplementedError("a model test class implements get_config()")

    def get_inputs(self, batch_size: int) -> dict[str, Any]:
        raise NotImplementedError("a model test class implements get_inputs(batch_size)")

    def get_loss(self, outputs: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The loss the training check lowers; defaults to `outputs.loss`."""
        loss = getattr(outputs, "loss", None)
        if loss is None:
            pytest.skip("the model returns no loss for these inputs; override get_loss to test training")
        return loss

    def test_save_load(self, tmp_path):
        check_save_load(self, tmp_path)

    def test_init_weights_covers_every_tensor(self):
        check_init_weights_covers_every_tensor(self)

    def test_missing_weights_load(self, tmp_path):
        check_missing_weights_load(self, tmp_path)

    def test_meta_load_restores_buffers(self, tmp_path):
        check_meta_load_restores_buffers(self, tmp_path)

    def test_return_dict_equivalence(self):
        check_return_dict_equivalence(self)

    def test_batch_equivalence(self):
        check_batch_equivalence(self)

    def test_training_lowers_loss(self):
        check_training_lowers_loss(self)

    def test_auto_class_round_trip(self, tmp_path):
        check_auto_class_round_trip(self, tmp_path)

    def test_config_round_trip(self, tmp_path):
        check_config_round_trip(self, tmp_path)


__all__ = [
    "EffhubModelTesterMixin",
    "assert_tensors_close",
    "check_auto_class_round_trip",
    "check_batch_equivalence",
    "check_config_round_trip",
    "check_init_weights_covers_every_tensor",
    "check_meta_load_restores_buffers",
    "check_missing_weights_load",
    "check_return_dict_equivalence",
    "check_save_load",
    "check_training_lowers_loss",
    "flatten_tensors",
    "quiet_transformers",
]
