"""A small gated model, datasets and phases shared by the training tests and the scripts they launch.

The phases mimic what the methods need: a warm-up, then an alternating phase where a "weights" update and a
"policy" update (each with its own optimiser and dataset) take turns, a schedule on `ctx.state`, and parameters
that are unused in some passes (the policy parameter during weight updates, the block for batches without an
eligible sample, a parameter that no update trains). `build_paired_phases` adds an update drawing one batch from
each of two datasets per micro-step, with a batch size per dataset. `make_options` / `train_one_stage` run them
through the run layer (`Run.train_stage`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from effhub.training import Phase, Run, RunOptions, Update

BLOCK_IDS_BELOW = 8  # samples with a smaller id go through the block in weight updates; others skip it


class TinyGatedNet(nn.Module):
    """Linear -> (optional block, gated or masked) -> Linear, plus a parameter no update trains."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.block = nn.Linear(8, 8)
        self.out = nn.Linear(8, 1)
        self.gate = nn.Parameter(torch.zeros(2))
        self.untrained = nn.Linear(2, 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, ids=None, use_gate: bool = False):
        hidden = self.dropout(torch.relu(self.inp(x)))
        if use_gate:
            hidden = hidden + torch.softmax(self.gate, dim=0)[0] * self.block(hidden)
        elif ids is not None:
            mask = (ids < BLOCK_IDS_BELOW).to(hidden.dtype)
            # when no sample of this batch is eligible the block is skipped: its parameters get no gradient here
            if bool(mask.any()):
                hidden = hidden + mask[:, None] * self.block(hidden)
        return self.out(hidden)

    def weight_parameters(self):
        return [*self.inp.parameters(), *self.block.parameters(), *self.out.parameters()]


class RegressionSet(Dataset):
    """`n` samples {"x", "y", "id"} from a fixed random linear rule."""

    def __init__(self, n: int, seed: int, ids: list[int] | None = None):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=generator)
        self.y = (self.x @ torch.tensor([0.5, -1.0, 2.0, 0.3]))[:, None] + 0.1 * torch.randn(n, 1, generator=generator)
        self.ids = list(range(n)) if ids is None else list(ids)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        sample = self.ids[index]
        return {"x": self.x[sample], "y": self.y[sample], "id": sample}


def build_model(seed: int = 0, dropout: float = 0.0) -> TinyGatedNet:
    torch.manual_seed(seed)
    return TinyGatedNet(dropout=dropout)


def build_datasets(train1_ids=None, train2_ids=None) -> dict:
    return {"train1": RegressionSet(32, seed=1, ids=train1_ids), "train2": RegressionSet(16, seed=2, ids=train2_ids)}


def build_phases(batch_size: int = 4, record=None, on_step_end_extra=None, warmup_steps: int = 3,
                 alternate_steps: int = 6) -> list[Phase]:
    """Warm-up (weights only), then weights every step and the policy on odd steps, with a temperature schedule.

    Args:
        record: `record(phase, dataset, ids)` is called with the sample ids of every micro-batch.
        on_step_end_extra: `f(ctx)` called after the temperature schedule of the alternating phase.
    """

    def weights_loss(model, batch, ctx):
        if record is not None:
            record(ctx.phase, "train1", batch["id"].tolist())
        prediction = model(batch["x"], ids=batch["id"])
        return torch.nn.functional.mse_loss(prediction, batch["y"])

    def policy_loss(model, batch, ctx):
        if record is not None:
            record(ctx.phase, "train2", batch["id"].tolist())
        prediction = model(batch["x"], use_gate=True)
        return {"loss": torch.nn.functional.mse_loss(prediction, batch["y"]), "temperature": ctx.state["temperature"]}

    def temperature_schedule(ctx):
        ctx.state["temperature"] = ctx.state["temperature"] * 0.8
        if on_step_end_extra is not None:
            on_step_end_extra(ctx)

    def weights_update(scheduled: bool) -> Update:
        return Update(
            name="weights", dataset="train1", loss=weights_loss, parameters=lambda m: m.weight_parameters(),
            optimizer=lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
            scheduler=(lambda opt, total: torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.2, total)) if scheduled else None,
        )

    policy = Update(name="policy", dataset="train2", loss=policy_loss, parameters=lambda m: [m.gate],
                    optimizer=lambda params: torch.optim.Adam(params, lr=0.05), every=2, offset=1)
    return [
        Phase("warmup", warmup_steps, [weights_update(False)], batch_size=batch_size),
        Phase("alternate", alternate_steps, [weights_update(True), policy], batch_size=batch_size,
              on_step_end=temperature_schedule),
    ]


def build_paired_phases(batch_size=None, steps: int = 6, record=None, on_step_end=None) -> list[Phase]:
    """One phase whose single update draws a `train1` batch and a `train2` batch per micro-step (different sizes).

    Args:
        batch_size (`dict`): micro-batch size per dataset key (default: 3 for train1, 5 for train2, so that a few
            steps end mid-epoch on both streams: 11 and 4 batches per epoch on one process).
        record: `record(batches)` is called with the `{key: batch}` dict of every micro-step.
        on_step_end: `f(ctx)` after every step.
    """
    batch_size = dict(batch_size or PAIRED_BATCH_SIZES)

    def joint_loss(model, batches, ctx):
        if record is not None:
            record(batches)
        first, second = batches["train1"], batches["train2"]
        loss = torch.nn.functional.mse_loss(model(first["x"], ids=first["id"]), first["y"])
        return loss + torch.nn.functional.mse_loss(model(second["x"], use_gate=True), second["y"])

    joint = Update(name="joint", dataset=("train1", "train2"), loss=joint_loss,
                   parameters=lambda m: [*m.weight_parameters(), m.gate],
                   optimizer=lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9))
    return [Phase("joint", steps, [joint], batch_size=batch_size, on_step_end=on_step_end)]


PAIRED_BATCH_SIZES = {"train1": 3, "train2": 5}
INITIAL_STATE = {"temperature": 5.0}


def make_options(output_dir, **overrides) -> RunOptions:
    """Options of a quiet CPU run in `output_dir`, with `overrides` applied."""
    values = dict(output_dir=output_dir, progress=False, cpu=True)
    values.update(overrides)
    return RunOptions(**values)


def reset_accelerate_state() -> None:
    """Forget Accelerate's process-wide singletons, so that a next `Run` in the same test starts from scratch."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def train_one_stage(output_dir, phases=None, datasets=None, model=None, *, seed: int = 0, method: str = "tiny",
                    recipe=None, stage: str = "train", initial_state=None, **options):
    """Train one stage in a fresh `Run` and close it; returns `(StageResult, run)`."""
    run = Run(make_options(output_dir, **options), method=method, seed=seed, recipe=recipe)
    try:
        result = run.train_stage(stage, model if model is not None else build_model(seed=0),
                                 phases if phases is not None else build_phases(),
                                 datasets if datasets is not None else build_datasets(),
                                 initial_state=dict(INITIAL_STATE if initial_state is None else initial_state))
    finally:
        run.close()
        reset_accelerate_state()
    return result, run


def state_dict_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone().cpu() for key, value in model.state_dict().items()}


def run_training_script(script: str, run_dir: Path, *arguments: str) -> subprocess.CompletedProcess:
    """Run one of this folder's training scripts on one CPU thread (as the in-process references), one process."""
    here = Path(__file__).resolve().parent
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ACCELERATE_USE_CPU", None)
    return subprocess.run([sys.executable, str(here / script), str(run_dir), *arguments],
                          env=env, capture_output=True, text=True, timeout=180, cwd=here)
