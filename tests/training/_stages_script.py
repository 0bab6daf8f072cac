"""Launched by test_run_layer.py: `python _stages_script.py <run_dir> <mode> [<kill_at>]`.

A run of two stages on one model: "warmup" (weights only, one dataset) then "joint" (one update drawing a train1
batch and a train2 batch of different sizes per micro-step, with dropout). mode `kill`: SIGKILL this process in the
step after global step `kill_at`'s checkpoint (inside "joint" when `kill_at` > 3); mode `resume`: resume the run and
write what it did to `<run_dir>/final.pt`.
"""

import os
import signal
import sys
from pathlib import Path

import torch

from _training_fixtures import (
    INITIAL_STATE,
    build_datasets,
    build_model,
    build_paired_phases,
    build_phases,
    make_options,
    state_dict_of,
)
from effhub.training import Run

CHECKPOINT_EVERY = 2
DROPOUT = 0.1
SEED = 5
WARMUP_STEPS = 3
JOINT_STEPS = 6
GRAD_ACCUM = 2


def die_after(kill_at: int | None):
    def hook(ctx):
        ctx.state["temperature"] = ctx.state["temperature"] * 0.5
        # ctx.global_step is 0-based: in step `kill_at` the checkpoint `checkpoint-<kill_at>` is already on disk
        if kill_at is not None and ctx.global_step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    return hook


def validation_loss(model) -> dict:
    second = build_datasets()["train2"]
    with torch.no_grad():
        model.eval()
        loss = torch.nn.functional.mse_loss(model(second.x, use_gate=True), second.y).item()
        model.train()
    return {"val_loss": loss}


def train(run_dir: Path, resume: bool, kill_at: int | None = None, record=None) -> dict:
    """Train (or resume) the two-stage run in `run_dir`; returns what each stage did and the final weights.

    Args:
        record: `record(batches)` with the `{key: batch}` dict of every micro-step of the joint stage.
    """
    calls = {"warmup": 0, "joint": 0}

    def count_warmup(*args):
        calls["warmup"] += 1

    def count_joint(batches):
        calls["joint"] += 1
        if record is not None:
            record(batches)

    options = make_options(run_dir, grad_accum=GRAD_ACCUM, checkpoint_every=CHECKPOINT_EVERY, resume=resume)
    with Run(options, method="tiny", seed=SEED, recipe={"name": "two-stage-test"}) as run:
        first = run.train_stage("warmup", build_model(seed=0, dropout=DROPOUT),
                                build_phases(warmup_steps=WARMUP_STEPS, record=count_warmup)[:1], build_datasets(),
                                outputs=validation_loss)
        warmup_weights = state_dict_of(first.model)
        second = run.train_stage("joint", first.model,
                                 build_paired_phases(steps=JOINT_STEPS, record=count_joint,
                                                     on_step_end=die_after(kill_at)),
                                 build_datasets(), initial_state=dict(INITIAL_STATE))
        return {"weights": state_dict_of(second.model), "warmup_weights": warmup_weights, "calls": calls,
                "skipped": {"warmup": first.skipped, "joint": second.skipped}, "warmup_outputs": first.outputs,
                "state": dict(second.state), "global_step": run.global_step}


def main(run_dir: Path, mode: str, kill_at: int | None) -> None:
    done = train(run_dir, resume=mode == "resume", kill_at=kill_at if mode == "kill" else None)
    torch.save(done, run_dir / "final.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
