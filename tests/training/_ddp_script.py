"""Launched by test_training_multiprocess.py under `accelerate launch --multi_gpu --num_processes 2` on the CPU.

Each rank writes `rank<r>.json` (world size, the sample ids it drew) and `rank<r>.pt` (its final weights) into the
folder given as the first argument; the run folder (logs, checkpoints) is `<folder>/run`.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

from _training_fixtures import INITIAL_STATE, build_datasets, build_model, build_phases, state_dict_of
from effhub.training import PhasedTrainer, TrainingArguments


def main(folder: Path) -> None:
    seen = defaultdict(list)

    def record(phase, dataset, ids):
        seen[f"{phase}/{dataset}"].extend(ids)

    model = build_model(seed=0)
    untrained_before = model.untrained.weight.detach().clone()
    args = TrainingArguments(output_dir=folder / "run", seed=0, grad_accum=2, progress=False, method="tiny")
    trainer = PhasedTrainer(model, build_phases(batch_size=4, record=record), build_datasets(), args,
                            initial_state=dict(INITIAL_STATE))
    accelerator = trainer.accelerator
    trained = trainer.train()
    rank = accelerator.process_index
    torch.save(state_dict_of(trained), folder / f"rank{rank}.pt")
    report = {
        "rank": rank,
        "world_size": accelerator.num_processes,
        "distributed_type": str(accelerator.distributed_type),
        "seen": dict(seen),
        "state": trainer.state,
        "untrained_unchanged": bool(torch.equal(untrained_before, trained.untrained.weight.detach())),
    }
    (folder / f"rank{rank}.json").write_text(json.dumps(report))
    trainer.end()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
