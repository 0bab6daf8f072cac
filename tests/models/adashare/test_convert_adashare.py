"""The converter maps the authors' checkpoint layout (sunxm2357/AdaShare `MTL2`) to effhub's, end to end."""

import json
import re

import pytest
import torch
from transformers import AutoImageProcessor, AutoModel

from effhub.cli import main
from effhub.errors import CheckpointError, TaskError
from effhub.models.adashare.convert_adashare import convert, map_authors_keys
from effhub.models.adashare.modeling_adashare import AdaShareModel
from effhub.recipes import load_recipe
from effhub.training import ConvertOptions

OVERRIDES = ["model.base_width=4", "model.head_hidden_size=8"]


def authors_state_dict(config, seed=0):
    """A state dict with the authors' key names and shapes, built independently of effhub's module names."""
    torch.manual_seed(seed)
    sd = {}

    def bn(prefix, c):
        sd.update({f"{prefix}.weight": torch.rand(c) + 0.5, f"{prefix}.bias": torch.randn(c),
                   f"{prefix}.running_mean": torch.randn(c), f"{prefix}.running_var": torch.rand(c) + 0.5,
                   f"{prefix}.num_batches_tracked": torch.tensor(7)})

    w = config.base_width
    sd["module.backbone.conv1.weight"] = torch.randn(w, 3, 7, 7)
    bn("module.backbone.bn1", w)
    inplanes = w
    for s, n in enumerate(config.stage_blocks):
        planes = w * 2**s
        if s in (1, 2, 3):  # stride 2 or dilation 2/4 (stage 0 keeps its width: no projection)
            sd[f"module.backbone.ds.{s}.0.weight"] = torch.randn(planes, inplanes, 1, 1)
            bn(f"module.backbone.ds.{s}.1", planes)
        for b in range(n):
            cin = inplanes if b == 0 else planes
            sd[f"module.backbone.blocks.{s}.{b}.conv1.weight"] = torch.randn(planes, cin, 3, 3)
            bn(f"module.backbone.blocks.{s}.{b}.bn1", planes)
            sd[f"module.backbone.blocks.{s}.{b}.conv2.weight"] = torch.randn(planes, planes, 3, 3)
            bn(f"module.backbone.blocks.{s}.{b}.bn2", planes)
        inplanes = planes
    h = config.head_hidden_size
    for k, channels in enumerate(config.tasks.values(), start=1):
        for i in range(4):
            p = f"module.task{k}_fc1_c{i}"
            sd.update({f"{p}.conv1.weight": torch.randn(h, inplanes, 3, 3), f"{p}.conv1.bias": torch.randn(h),
                       f"{p}.conv2.weight": torch.randn(h, h, 1, 1), f"{p}.conv2.bias": torch.randn(h),
                       f"{p}.conv3.weight": torch.randn(channels, h, 1, 1), f"{p}.conv3.bias": torch.randn(channels)})
        sd[f"module.task{k}_logits"] = torch.randn(config.num_blocks, 2)
    return sd


def args_for(tmp_path, recipe="nyuv2-3task", policy=None, name="converted"):
    return ConvertOptions(recipe=recipe, output=tmp_path / name, overrides=list(OVERRIDES), extra={"policy": policy})


@pytest.fixture
def checkpoint(tmp_path):
    config = load_recipe("adashare", "nyuv2-3task", OVERRIDES).model_config()
    sd = authors_state_dict(config)
    path = tmp_path / "retrain000_policyIterbest_model.pth.tar"
    torch.save({"mtl-net": sd, "iter": 20000, "temp": 0.5}, path)
    return path, sd, config


def test_convert_maps_every_weight(tmp_path, checkpoint):
    path, sd, config = checkpoint
    policy = {f"task{k}_policy": [[1, 0] if (l + k) % 3 else [0, 1] for l in range(16)] for k in (1, 2, 3)}
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    output = convert(path, args_for(tmp_path, policy=str(tmp_path / "policy.json")))
    model = AutoModel.from_pretrained(output)
    assert isinstance(model, AdaShareModel) and model.config.backbone_depth == 34
    own = model.state_dict()
    assert torch.equal(own["backbone.stem.conv.weight"], sd["module.backbone.conv1.weight"])
    assert torch.equal(own["backbone.stages.2.downsample.bn.running_var"], sd["module.backbone.ds.2.1.running_var"])
    assert torch.equal(own["backbone.stages.3.blocks.2.conv2.weight"], sd["module.backbone.blocks.3.2.conv2.weight"])
    assert torch.equal(own["heads.depth.branches.3.conv3.bias"], sd["module.task3_fc1_c3.conv3.bias"])
    assert torch.equal(own["policy.normals"], sd["module.task2_logits"])
    assert model.config.policy["segmentation"] == [row[0] for row in policy["task1_policy"]]
    # every weight of the checkpoint arrived somewhere (the same multiset of values)
    assert sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked")) == sum(
        v.numel() for k, v in own.items() if not k.endswith("num_batches_tracked") and ".task_" not in k)
    # the authors' shared BatchNorm statistics are every task's
    shared = sd["module.backbone.blocks.3.2.bn2.running_mean"]
    task_means = own["backbone.stages.3.blocks.2.bn2.task_running_mean"]
    assert task_means.shape == (3, shared.numel()) and all(torch.equal(row, shared) for row in task_means)
    processor = AutoImageProcessor.from_pretrained(output)
    assert processor.do_flip_channel_order and not processor.do_rescale
    # the converted model reproduces a forward written directly on the authors' weights (first block, soft policy)
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        stem = torch.nn.functional.conv2d(x, sd["module.backbone.conv1.weight"], stride=2, padding=3)
        assert torch.allclose(model.backbone.stem.conv(x), stem, atol=1e-4)


def test_convert_cli_and_tasks_mismatch(tmp_path, checkpoint, capsys):
    path, _, _ = checkpoint
    argv = ["convert", "adashare", str(path), "--recipe", "nyuv2-2task", "--output", str(tmp_path / "out")]
    with pytest.raises(TaskError, match="task head"):
        convert(path, args_for(tmp_path, recipe="nyuv2-2task", name="out"))
    assert not (tmp_path / "out").exists()
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "3 task head(s)" in error and "Fix:" in error
    assert not (tmp_path / "out").exists()


def test_convert_rejects_truncated_and_missing(tmp_path, checkpoint):
    path, _, _ = checkpoint
    truncated = tmp_path / "truncated.pth.tar"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot be read"):
        convert(truncated, args_for(tmp_path))
    with pytest.raises(CheckpointError, match="does not exist"):
        convert(tmp_path / "nope.pth.tar", args_for(tmp_path))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="cannot be read"):
        convert(corrupt, args_for(tmp_path))
    assert not (tmp_path / "converted").exists()
    assert not [p for p in tmp_path.iterdir() if re.match(r"^\.converted-", p.name)]


def test_unknown_keys_are_refused():
    with pytest.raises(CheckpointError, match="unknown layout"):
        map_authors_keys({"policy_net.fc.weight": torch.zeros(1)}, ["segmentation"])
