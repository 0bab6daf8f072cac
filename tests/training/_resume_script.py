"""Launched by test_training_resume.py: `python _resume_script.py <run_dir> <mode> [<kill_at>]`.

mode `kill`: train one stage ("train") with checkpoints and SIGKILL this process in the step after global step
`kill_at`'s checkpoint; mode `resume`: resume the run from its latest checkpoint and write the final weights to
`<run_dir>/final.pt`.
"""

import os
import signal
import sys
from pathlib import Path

import torch

from _training_fixtures import INITIAL_STATE, build_datasets, build_model, build_phases, make_options, state_dict_of
from effhub.training import Run

CHECKPOINT_EVERY = 2
DROPOUT = 0.1
STAGE = "train"


def die_after(kill_at: int | None):
    def die_after_checkpoint(ctx):
        # ctx.global_step is 0-based: in step `kill_at` the checkpoint `checkpoint-<kill_at>` is already on disk
        if kill_at is not None and ctx.global_step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    return die_after_checkpoint


def train(run_dir: Path, resume: bool, kill_at: int | None = None):
    """Train the run in `run_dir`; returns `(weights, state)` of the finished stage."""
    options = make_options(run_dir, grad_accum=2, checkpoint_every=CHECKPOINT_EVERY, resume=resume)
    with Run(options, method="tiny", seed=3, recipe={"name": "resume-test"}) as run:
        result = run.train_stage(STAGE, build_model(seed=0, dropout=DROPOUT),
                                 build_phases(on_step_end_extra=die_after(kill_at)), build_datasets(),
                                 initial_state=dict(INITIAL_STATE))
        return state_dict_of(result.model), dict(result.state)


def main(run_dir: Path, mode: str, kill_at: int | None) -> None:
    weights, state = train(run_dir, resume=mode == "resume", kill_at=kill_at if mode == "kill" else None)
    torch.save({"weights": weights, "state": state}, run_dir / "final.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
