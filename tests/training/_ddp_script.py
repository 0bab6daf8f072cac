"""Launched by test_training_multiprocess.py under `accelerate launch --multi_gpu --num_processes 2` on the CPU.

One run of two stages: "main" (the fixtures' warm-up and alternating phases) then "paired" (one update drawing a
train1 and a train2 batch per micro-step, of different sizes). Each rank writes `rank<r>.json` (world size, the sample
ids it drew, per phase and dataset) and `rank<r>.pt` (its final weights) into the folder given as the first argument;
the run folder (logs, checkpoints) is `<folder>/run`. Every rank ends by closing the run.
"""

import json
import sys
from collections import defaultdict
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

PAIRED_STEPS = 3
PAIRED_BATCH = {"train1": 4, "train2": 2}  # per rank: global batches of 8 and 4 divide 32 and 16


def main(folder: Path) -> None:
    seen = defaultdict(list)

    def record(phase, dataset, ids):
        seen[f"{phase}/{dataset}"].extend(ids)

    def record_pair(batches):
        for dataset, batch in batches.items():
            seen[f"joint/{dataset}"].extend(batch["id"].tolist())

    model = build_model(seed=0)
    untrained_before = model.untrained.weight.detach().clone()
    # cpu=False: the launcher's ACCELERATE_USE_CPU=true selects the CPU
    options = make_options(folder / "run", seed=0, grad_accum=2, cpu=False)
    with Run(options, method="tiny", seed=0) as run:
        accelerator = run.accelerator
        first = run.train_stage("main", model, build_phases(batch_size=4, record=record), build_datasets(),
                                initial_state=dict(INITIAL_STATE))
        second = run.train_stage("paired", first.model,
                                 build_paired_phases(batch_size=PAIRED_BATCH, steps=PAIRED_STEPS, record=record_pair),
                                 build_datasets())
        trained = second.model
        rank = accelerator.process_index
        torch.save(state_dict_of(trained), folder / f"rank{rank}.pt")
        report = {
            "rank": rank,
            "world_size": accelerator.num_processes,
            "distributed_type": str(accelerator.distributed_type),
            "is_main_process": run.is_main_process,
            "seen": dict(seen),
            "state": first.state,
            "global_step": run.global_step,
            "untrained_unchanged": bool(torch.equal(untrained_before, trained.untrained.weight.detach())),
        }
        (folder / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
