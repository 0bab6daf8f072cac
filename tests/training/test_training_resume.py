"""Checkpoint and resume: a run SIGKILLed after checkpoint k and resumed ends where an uninterrupted run ends."""

import json
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from _resume_script import DROPOUT, STAGE, train
from _training_fixtures import (
    INITIAL_STATE,
    build_model,
    reset_accelerate_state,
    run_training_script,
    state_dict_of,
)

from effhub.training import checkpoint_dirs, read_metrics_log, read_trainer_state

KILL_AT = 6  # mid-way through the alternating phase (3 warm-up steps + 3 of 6), mid-epoch for both datasets


def run_script(run_dir: Path, *arguments: str) -> subprocess.CompletedProcess:
    return run_training_script("_resume_script.py", run_dir, *arguments)


def test_sigkilled_run_resumes_to_the_uninterrupted_weights(tmp_path):
    torch.set_num_threads(1)  # same arithmetic as the subprocesses (OMP_NUM_THREADS=1)
    reference_dir = tmp_path / "reference"
    expected, expected_state = train(reference_dir, resume=False)
    reset_accelerate_state()

    run_dir = tmp_path / "killed"
    killed = run_script(run_dir, "kill", str(KILL_AT))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    stage_dir = run_dir / "checkpoints" / STAGE
    steps = [step for step, _ in checkpoint_dirs(stage_dir)]
    assert steps == [KILL_AT - 2, KILL_AT]  # checkpoints_total_limit=2
    assert not (run_dir / "checkpoints" / "stages.json").exists()  # the stage did not finish
    saved = read_trainer_state(stage_dir / f"checkpoint-{KILL_AT}")
    assert saved["phase_name"] == "alternate" and saved["step_in_phase"] == 3
    assert saved["data_positions"]["train1"]["batches"] > 0  # mid-epoch
    assert saved["state"]["temperature"] == pytest.approx(INITIAL_STATE["temperature"] * 0.8 ** 3)

    # leftovers of a save interrupted half-way, newer than the real checkpoint: resume must not pick them
    half_written = stage_dir / ".tmp-checkpoint-8"
    half_written.mkdir()
    (half_written / "model.safetensors").write_bytes(b"truncated")
    no_state = stage_dir / "checkpoint-9"
    no_state.mkdir()
    (no_state / "model.safetensors").write_bytes(b"truncated")

    resumed = run_script(run_dir, "resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    final = torch.load(run_dir / "final.pt")
    for key, value in expected.items():
        torch.testing.assert_close(final["weights"][key], value, atol=1e-6, rtol=0, msg=key)
    assert final["state"] == pytest.approx(expected_state)
    initial = state_dict_of(build_model(seed=0, dropout=DROPOUT))
    assert not torch.equal(expected["out.weight"], initial["out.weight"])

    assert not half_written.exists()  # removed by the next save
    records = [r for r in read_metrics_log(run_dir / "logs" / "metrics.jsonl") if "phase" in r]
    assert [r["step"] for r in records] == list(range(1, 10))  # steps after the checkpoint were not logged twice
    reference_records = [r for r in read_metrics_log(reference_dir / "logs" / "metrics.jsonl") if "phase" in r]
    for got, want in zip(records, reference_records):
        assert got["phase"] == want["phase"]
        for key in want:
            if key.endswith("/loss") or key.endswith("/lr"):
                assert got[key] == pytest.approx(want[key], abs=1e-6), (got["step"], key)
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["method"] == "tiny" and info["seed"] == 3 and len(info["resumes"]) == 1
    assert info["recipe"] == {"name": "resume-test"} and info["resumes"][0]["world_size"] == 1
    stages = json.loads((run_dir / "checkpoints" / "stages.json").read_text())["stages"]
    assert stages[STAGE]["global_step"] == 9 and stages[STAGE]["steps"] == 9
    assert stages[STAGE]["state"] == pytest.approx(expected_state)
