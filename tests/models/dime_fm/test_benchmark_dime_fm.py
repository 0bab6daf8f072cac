"""The DIME-FM benchmark at toy size, end to end: every arm trained and measured, the table's JSON written."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_toy_benchmark_writes_every_arm_and_the_targets(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.dime_fm import run

    monkeypatch.setitem(run.SETTINGS, "quick", {"recipe": "demo", "samples": 32, "steps": 2, "batch_size": 8,
                                                "seeds": [0, 1], "text_steps": 2})
    # two worker processes: the arms run in parallel, as in the full benchmark
    assert run.main(["--quick", "--workers", "2", "--output", str(tmp_path / "result.json")]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert set(result["arms"]) == set(run.ARMS)
    assert all(len(result["arms"][arm]) == 2 for arm in run.ARMS)
    assert all(r["steps"] == 2 for arm in run.ARMS for r in result["arms"][arm])
    assert result["summary"]["vision_parameter_ratio"] < 0.25
    # the second stage: every DIME-FM seed measured again with its own distilled text tower
    assert all(r["text_steps"] == 2 and 0 <= r["two_stage_zero_shot_accuracy"] <= 1 for r in result["arms"]["dime-fm"])
    assert result["summary"]["text_parameter_ratio"] < 0.5
    assert result["teacher"]["zero_shot_accuracy"] > 0.5
    assert set(result["summary"]["targets"]) == {"at_most_quarter_of_vision_parameters",
                                                 "at_least_90_percent_of_zero_shot",
                                                 "ahead_of_contrastive_from_scratch",
                                                 "ahead_of_paired_logit_distillation"}


def test_unpaired_arm_takes_its_own_text_batch_and_arms_are_checked(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.dime_fm import run

    full = run.SETTINGS["full"]
    # DIME-FM draws more unpaired texts per step than it has images; a paired arm has one caption per image
    assert run._recipe(full, 0, unpaired=True).train.text_batch_size == full["text_batch_size"] > full["batch_size"]
    assert run._recipe(full, 0).train.text_batch_size == full["batch_size"]
    assert run._text_stage_recipe(full, 0).train.text_batch_size == full["text_batch_size"]
    with pytest.raises(SystemExit):
        run.main(["--arms", "dime-fm,no-such-arm"])
