"""Convert a checkpoint released by the AdaShare authors (sunxm2357/AdaShare; `torch.save` of a dict whose
`'mtl-net'` entry is the state dict of their `MTL2` model) into an effhub model folder.

Key layout of their model (read in `models/deeplab_resnet.py`, `models/base.py`, `envs/base_env.py`):
`backbone.conv1`, `backbone.bn1` (stem); `backbone.blocks.<stage>.<block>.{conv,bn}{1,2[,3]}` (residual branches);
`backbone.ds.<stage>.{0,1}` (shortcut projection: conv, BN); `task<k>_fc1_c<i>.conv{1,2,3}` (ASPP branch i of task
k, 1-based k, rates 6/12/18/24); `task<k>_logits` ([L, 2] select/skip logits). A `module.` prefix (DataParallel)
is dropped. Their images are BGR with the Caffe mean subtracted: the converted folder's image processor does the same.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from ...errors import CheckpointError, TaskError

_HEAD_KEY = re.compile(r"^task(\d+)_fc1_c(\d+)\.(conv[123]\.(?:weight|bias))$")
_LOGITS_KEY = re.compile(r"^task(\d+)_logits$")


def load_authors_state_dict(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the authors' checkpoint (`.pth.tar`, or a safetensors file of the same keys) as a flat state dict."""
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist", "pass the path of the authors' .pth.tar file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            checkpoint = load_file(str(path))
        else:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch/safetensors raise many types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint '{path}' cannot be read ({type(error).__name__}: {str(error)[:200]})",
            "download it again (it may be truncated) or pass the authors' *_model.pth.tar file",
        ) from error
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("mtl-net"), dict):
        checkpoint = checkpoint["mtl-net"]
    if not isinstance(checkpoint, dict) or not any(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(f"'{path}' holds no state dict", "pass a checkpoint saved by the authors' train.py")
    return {key[len("module."):] if key.startswith("module.") else key: value
            for key, value in checkpoint.items() if isinstance(value, torch.Tensor)}


def map_authors_keys(state_dict: dict[str, torch.Tensor], task_names: list[str]) -> dict[str, torch.Tensor]:
    """Rename the authors' keys to effhub's (`task_names` in the authors' task order: task1, task2, ...)."""
    converted, unknown = {}, []
    for key, value in state_dict.items():
        new_key = None
        if key.startswith("backbone."):
            rest = key[len("backbone."):]
            if rest.startswith(("conv1.", "bn1.")):
                new_key = "backbone.stem." + rest.replace("conv1.", "conv.", 1).replace("bn1.", "bn.", 1)
            elif match := re.match(r"^blocks\.(\d+)\.(\d+)\.(.+)$", rest):
                new_key = f"backbone.stages.{match[1]}.blocks.{match[2]}.{match[3]}"
            elif match := re.match(r"^ds\.(\d+)\.([01])\.(.+)$", rest):
                new_key = f"backbone.stages.{match[1]}.downsample.{'conv' if match[2] == '0' else 'bn'}.{match[3]}"
        elif match := _HEAD_KEY.match(key):
            new_key = f"heads.{task_names[int(match[1]) - 1]}.branches.{int(match[2])}.{match[3]}"
        elif match := _LOGITS_KEY.match(key):
            new_key = f"policy.{task_names[int(match[1]) - 1]}"
        if new_key is None:
            unknown.append(key)
        else:
            converted[new_key] = value
    if unknown:
        raise CheckpointError(f"checkpoint keys of an unknown layout: {unknown[:5]}",
                              "pass a checkpoint of the authors' MTL2 (task-specific policy) model")
    return converted


def _checkpoint_tasks(state_dict: dict[str, torch.Tensor]) -> dict[int, int]:
    """Task index (1-based) -> output channels, read from the last conv of the first ASPP branch."""
    tasks = {}
    for key, value in state_dict.items():
        match = _HEAD_KEY.match(key)
        if match and match[2] == "0" and match[3] == "conv3.weight":
            tasks[int(match[1])] = int(value.shape[0])
    return dict(sorted(tasks.items()))


def _read_policy(spec: str, model, task_names: list[str]) -> dict[str, list[int]]:
    if spec == "argmax":
        return model.argmax_policy()
    path = Path(spec)
    if not path.is_file():
        raise CheckpointError(f"policy file '{path}' does not exist", "pass a JSON policy file or 'argmax'")
    try:
        raw = json.loads(path.read_text())
    except ValueError as error:
        raise CheckpointError(f"policy file '{path}' is not JSON ({error})",
                              "write the policy as JSON (convert the authors' pickle with json.dump of .tolist())")
    policy = {}
    for key, value in raw.items():
        match = re.match(r"^task(\d+)_policy$", key)
        name = task_names[int(match[1]) - 1] if match and int(match[1]) <= len(task_names) else key
        # the authors store [L, 2] one-hot rows, column 0 = execute
        policy[name] = [int(row[0]) if isinstance(row, (list, tuple)) else row for row in value]
    return policy


def convert_state_dict(state_dict, config):
    """Build an [`AdaShareModel`] of `config` holding the authors' weights; checks tasks, shapes and coverage."""
    from .modeling_adashare import AdaShareModel

    found = _checkpoint_tasks(state_dict)
    expected = list(config.tasks.values())
    if list(found.values()) != expected:
        raise TaskError(
            f"the checkpoint has {len(found)} task head(s) with {list(found.values())} output channels, the recipe "
            f"expects {expected} for {config.task_names}",
            "pick the recipe the checkpoint was trained with (e.g. nyuv2-3task for the 3-task NYU-v2 checkpoint)",
        )
    converted = map_authors_keys(state_dict, config.task_names)
    model = AdaShareModel(config)
    own = model.state_dict()
    # the authors' MTL model has one set of BatchNorm statistics: every task starts from it
    for key, value in own.items():
        if ".task_running_" in key and key not in converted:
            shared = converted.get(key.replace(".task_running_", ".running_"))
            if shared is not None:
                converted[key] = shared.to(value.dtype).unsqueeze(0).expand_as(value).clone()
    missing = sorted(k for k in own if k not in converted and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in converted if k not in own)
    wrong = sorted(k for k in converted if k in own and converted[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"the checkpoint does not fit the recipe's architecture (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, wrong shape {wrong[:3]})",
            "pick the recipe whose backbone depth and tasks match the checkpoint",
        )
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in converted:
            converted[key] = torch.zeros_like(value)
    model.load_state_dict(converted, strict=True)
    return model.eval()


def convert(source, options) -> Path:
    """`effhub convert adashare <ckpt> --recipe <name> --output <dir>`: write a loadable effhub model folder.

    The folder is built in a temporary sibling folder and moved into place at the end, so a failure leaves nothing.

    Args:
        source (`str` or `Path`): the authors' checkpoint (`.pth.tar`).
        options (`effhub.training.ConvertOptions`): recipe, output folder, overrides; `extra["policy"]` is the hard
            policy of a re-trained checkpoint (see the `policy` option in the method's registration).
    """
    from ...recipes import load_recipe
    from .image_processing_pil_adashare import AdaShareImageProcessorPil

    recipe = load_recipe("adashare", options.recipe or "nyuv2-3task", options.overrides)
    config = recipe.model_config()
    model = convert_state_dict(load_authors_state_dict(source), config)
    policy_spec = options.extra.get("policy")
    if policy_spec:
        model.set_policy(_read_policy(policy_spec, model, config.task_names))
    output = Path(options.output)
    if output.exists() and any(output.iterdir()):
        raise CheckpointError(f"output folder '{output}' is not empty", "pass a new or empty --output folder")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    try:
        model.save_pretrained(staging)
        size = recipe.crop_size or [321, 321]
        AdaShareImageProcessorPil.for_authors_checkpoint(size={"height": size[0], "width": size[1]}).save_pretrained(
            staging)
        if output.exists():
            output.rmdir()
        os.replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


__all__ = ["convert", "convert_state_dict", "load_authors_state_dict", "map_authors_keys"]
