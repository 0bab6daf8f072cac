"""Launched by test_training_resume.py: `python _resume_script.py <run_dir> <mode> [<kill_at>]`.

mode `kill`: train with checkpoints and SIGKILL this process in the step after global step `kill_at`'s checkpoint;
mode `resume`: resume from the latest checkpoint and write the final weights to `<run_dir>/final.pt`.
"""

import os
import signal
import sys
from pathlib import Path

import torch

from _training_fixtures import INITIAL_STATE, build_datasets, build_model, build_phases, state_dict_of
from effhub.training import PhasedTrainer, TrainingArguments

CHECKPOINT_EVERY = 2
DROPOUT = 0.1


def build_trainer(run_dir: Path, resume: bool, kill_at: int | None = None) -> PhasedTrainer:
    def die_after_checkpoint(ctx):
        # ctx.global_step is 0-based: in step `kill_at` the checkpoint `checkpoint-<kill_at>` is already on disk
        if kill_at is not None and ctx.global_step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    args = TrainingArguments(output_dir=run_dir, seed=3, grad_accum=2, checkpoint_every=CHECKPOINT_EVERY,
                             resume=resume, progress=False, cpu=True, method="tiny", recipe={"name": "resume-test"})
    return PhasedTrainer(build_model(seed=0, dropout=DROPOUT), build_phases(on_step_end_extra=die_after_checkpoint),
                         build_datasets(), args, initial_state=dict(INITIAL_STATE))


def main(run_dir: Path, mode: str, kill_at: int | None) -> None:
    trainer = build_trainer(run_dir, resume=mode == "resume", kill_at=kill_at if mode == "kill" else None)
    model = trainer.train()
    torch.save({"weights": state_dict_of(model), "state": trainer.state}, run_dir / "final.pt")
    trainer.end()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
