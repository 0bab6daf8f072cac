"""The VideoIQ benchmark: the uniform-curve comparison, and a toy-sized run end to end (every section written)."""

import json
from pathlib import Path

import pytest

from tests.models.videoiq.test_training_videoiq import SHORT

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def benchmark_module(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.videoiq import run

    return run


def test_uniform_curve_interpolates_between_neighbouring_points(benchmark_module):
    points = [(100.0, 0.9), (10.0, 0.8), (1.0, 0.5)]
    assert benchmark_module.uniform_curve(points, 55.0)["top1"] == pytest.approx(0.85)
    assert benchmark_module.uniform_curve(points, 200.0)["top1"] == pytest.approx(0.9)
    below = benchmark_module.uniform_curve(points, 0.5)
    assert below["top1"] is None and below["cheapest"] == {"cost": 1.0, "top1": 0.5}
    assert benchmark_module.above_curve(0.86, 55.0, points)["above"]
    assert not benchmark_module.above_curve(0.84, 55.0, points)["above"]
    assert benchmark_module.above_curve(0.6, 0.5, points)["above"]  # cheaper and better than the cheapest point


def test_uniform_curve_is_the_best_mix_of_uniform_points(benchmark_module):
    # a dearer point that is less accurate than a cheaper one does not lower the curve: a policy equal to the
    # cheaper point at a little more cost ties with it, it is not above
    degenerate = [(8.0, 1.0), (21.0, 0.9995), (74.0, 0.9995)]
    assert benchmark_module.uniform_curve(degenerate, 8.2)["top1"] == pytest.approx(1.0)
    assert not benchmark_module.above_curve(1.0, 8.2, degenerate)["above"]
    assert benchmark_module.uniform_frontier(degenerate) == [(8.0, 1.0)]
    # a point below the segment of its neighbours: mixing them over videos does better
    hull = [(1.0, 0.5), (2.0, 0.55), (3.0, 0.9)]
    assert benchmark_module.uniform_curve(hull, 2.0)["top1"] == pytest.approx(0.7)
    assert benchmark_module.uniform_frontier(hull) == [(1.0, 0.5), (3.0, 0.9)]


def test_scaled_timing_drives_a_larger_network_with_the_trained_policy(benchmark_module):
    import torch

    from effhub.models.videoiq import VideoIQForVideoClassification
    from tests.models.videoiq.test_modeling_videoiq import clips, tiny_config

    torch.manual_seed(0)
    model = VideoIQForVideoClassification(tiny_config(bit_width_family=[8, 4, 2])).eval()
    result = benchmark_module.scaled_timing(model, clips(2, model.config), base_width=8, image_size=32, repeats=1)
    assert result["base_width"] == 8 and result["image_size"] == 32
    assert 0.0 <= result["action_agreement_with_testbed"] <= 1.0
    # a network of width 8 on 32 px frames costs more than the tiny one of width 4 on 16 px frames
    assert result["gmacs_per_frame"] > model.frame_costs()["frame_macs"] / 1e9
    assert result["policy_gmacs_per_frame"] == pytest.approx(model.frame_costs()["policy_macs"] / 1e9)
    times = result["seconds_per_clip"]
    assert times["full_precision"] > 0 and "dynamic_simulated" in times
    assert result["int8_kernels"] == bool(result["int8_bit_widths"])
    assert result["dynamic_vs_full"] > 0 and result["clips_per_call"] == 2


@pytest.mark.slow
def test_benchmark_toy_run(tmp_path, monkeypatch, benchmark_module):
    monkeypatch.setenv("EFFHUB_CACHE", str(tmp_path / "cache"))
    output = tmp_path / "videoiq.json"
    argv = ["--quick", "--output", str(output), "--timing-repeats", "1", "--timing-clips", "2",
            "--scale-width", "8", "--scale-image-size", "48", "--scale-clips", "2"]
    for value in SHORT:
        argv += ["--set", value]
    assert benchmark_module.main(argv) == 0
    result = json.loads(output.read_text())
    evaluations = result["evaluations"]
    assert set(evaluations) == {"policy", "uniform 8-bit", "uniform 4-bit", "uniform 2-bit", "full precision",
                                "random policy (uniform actions)", "random policy (policy's action shares)"}
    assert evaluations["full precision"]["bitops_vs_full"] == pytest.approx(1.0)
    assert evaluations["uniform 2-bit"]["bitops_vs_full"] < evaluations["uniform 4-bit"]["bitops_vs_full"] < 1
    testbed = result["testbed_frame_kind_top1"]
    assert "evidence" in testbed or "faint evidence" in testbed
    assert set(next(iter(testbed.values()))) == {"full precision", "8-bit", "4-bit", "2-bit", "clips"}
    assert result["int8_bit_widths"] == [8, 4, 2] and set(result["int8_evaluations"]) == {
        "policy", "uniform 8-bit", "uniform 4-bit", "uniform 2-bit"}
    timing = result["timing"]
    assert timing["seconds_per_clip"]["full_precision"] > 0 and 0 < timing["policy_share_of_dynamic"] < 1
    assert timing["int8_kernels"] and "dynamic_int8" in timing["seconds_per_clip"]
    # timed again after the evaluations, on the same kernels and clips
    assert set(result["timing_after_evaluations"]["seconds_per_clip"]) == set(timing["seconds_per_clip"])
    at_scale = result["timing_at_scale"]
    assert at_scale["image_size"] == 48 and at_scale["clips_per_call"] == 2
    assert at_scale["seconds_per_clip"]["full_precision"] > 0
    assert set(result["targets"]) == {
        "policy_above_uniform_curve_bitops", "policy_above_uniform_curve_proxy",
        "policy_within_0.5_points_of_full_precision_at_half_its_bitops",
        "cpu_time_at_least_40pct_less_at_matched_accuracy", "policy_above_random_policy_with_its_action_shares"}
