"""CUDA checks (marked `gpu`, excluded by default; `scripts/gpu_check.sh` runs them): bf16 training runs land on the
GPU and learn, and the models' bf16 outputs on CUDA stay close to their float32 outputs on the CPU."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (scripts/gpu_check.sh)")]


def _losses(run_dir):
    lines = (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    return [value for record in map(json.loads, lines) for key, value in record.items() if key.endswith("/loss")]


def test_tiny_trains_in_bf16_on_cuda(tmp_path):
    from effhub.recipes import load_recipe
    from effhub.registry import get_method, integrate_all
    from effhub.training import RunOptions

    integrate_all()
    run_dir = get_method("tiny").load("train")(load_recipe("tiny", "demo", ["train.steps=60"]),
                                              RunOptions(output_dir=tmp_path / "run", mixed_precision="bf16",
                                                         progress=False))
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["device"].startswith("cuda") and info["mixed_precision"] == "bf16"
    losses = _losses(run_dir)
    assert losses and all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0]
    accuracy = json.loads((run_dir / "eval_results.json").read_text())["results"][0]["metric_value"]
    assert accuracy > 0.5  # 4 balanced classes: chance is 0.25


def test_dualcoop_trains_in_bf16_on_cuda(tmp_path):
    from effhub.recipes import load_recipe
    from effhub.registry import get_method, integrate_all
    from effhub.training import RunOptions

    integrate_all()
    quick = ["train.steps=20", "train.batch_size=16", "data.train_size=96", "data.test_size=48",
             "train.eval_batch_size=48"]
    run_dir = get_method("dualcoop").load("train")(load_recipe("dualcoop", "demo", quick),
                                                  RunOptions(output_dir=tmp_path / "run", mixed_precision="bf16",
                                                             progress=False))
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["device"].startswith("cuda") and info["mixed_precision"] == "bf16"
    assert all(math.isfinite(loss) for loss in _losses(run_dir))
    assert (run_dir / "adapter_model.safetensors").is_file()


def _compare_bf16(model, inputs, key, tolerance):
    model = model.eval()
    with torch.no_grad():
        expected = getattr(model(inputs), key)
        model = model.to("cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            got = getattr(model(inputs.to("cuda")), key)
    expected = expected if isinstance(expected, torch.Tensor) else torch.cat([v.flatten() for v in expected.values()])
    got = got if isinstance(got, torch.Tensor) else torch.cat([v.flatten() for v in got.values()])
    got = got.float().cpu().reshape(expected.shape)
    scale = expected.abs().max().clamp_min(1e-6)
    assert torch.isfinite(got).all() and ((got - expected).abs().max() / scale) < tolerance


def test_adashare_and_videoiq_bf16_on_cuda_match_float32():
    from effhub.models.adashare import AdaShareConfig, AdaShareModel
    from effhub.models.videoiq import VideoIQConfig, VideoIQForVideoClassification

    torch.manual_seed(0)
    adashare = AdaShareModel(AdaShareConfig(tasks={"segmentation": 5, "depth": 1}, base_width=4, head_type="light",
                                            head_hidden_size=8))
    _compare_bf16(adashare, torch.randn(2, 3, 32, 32), "logits", 0.1)
    videoiq = VideoIQForVideoClassification(VideoIQConfig(
        num_frames=4, image_size=16, backbone_depth=18, base_width=4, stem_stride=2, policy_backbone="small",
        policy_width_multiplier=0.25, policy_image_size=16, policy_feature_size=16, policy_hidden_size=8,
        num_labels=5, bit_width_family=[32, 4, 2], skip_list=[1, 2]))
    # full precision: the policy's discrete choices may flip under bf16 rounding, the network's outputs may not
    with torch.no_grad():
        inputs = torch.randn(2, 4, 3, 16, 16)
        expected = videoiq.eval()(inputs, precision="full").logits
        with torch.autocast("cuda", dtype=torch.bfloat16):
            got = videoiq.to("cuda")(inputs.to("cuda"), precision="full").logits.float().cpu()
    assert torch.isfinite(got).all() and (got - expected).abs().max() / expected.abs().max() < 0.1
