"""The budget allocation recipe: the typed form of `effhub/budget/recipes/<name>.yaml`.

A recipe fixes the pool and test data, the tasks and their per-label costs, the grid a simulation runs (strategies x
budgets x seeds), the network every cell trains (hard sharing by default) and `taba`'s pilot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..models.adashare.recipe_adashare import AdaShareModelRecipe


def _demo_model() -> AdaShareModelRecipe:
    return AdaShareModelRecipe(tasks={"segmentation": 7, "depth": 1, "normals": 3}, backbone_depth=18, base_width=8,
                               head_type="light", head_hidden_size=16)


@dataclass
class PilotRecipe:
    """`taba`'s pilot: the first share of the budget, spent the same on every task, and the quick model trained on it.

    Args:
        labels: `equal_money` (the same money on every task, each task's labels on their own random images: the
            pilot's labels are themselves a sound allocation, so the pilot can be a large share of the budget) or
            `every_task` (a few images labelled for every task).
        uncertainty: what `taba` reads as a task's error left to learn, relative to a constant prediction: `gap`,
            the pilot model's held-out loss beyond its loss on its own training labels (what more labels remove);
            `heldout`, its held-out loss.
        fraction: share of the budget the pilot spends.
        min_images: `every_task`: fewest pilot images; `equal_money`: fewest labels of the costliest task (every
            other task gets as much money). The pilot is refused when that costs more than the budget.
        heldout_fraction: share of the pilot images kept out of the pilot model's training to measure how much of
            each task remains to learn.
        steps, batch_size, lr: the pilot model's training.
    """

    labels: Literal["every_task", "equal_money"] = "equal_money"
    uncertainty: Literal["heldout", "gap"] = "gap"
    fraction: float = 0.5
    min_images: int = 2
    heldout_fraction: float = 0.25
    steps: int = 150
    batch_size: int = 16
    lr: float = 0.003


@dataclass
class TabaRecipe:
    """Options of effhub's `taba` (see `effhub.budget.taba`).

    Args:
        dense_up_to: pools up to this size use the similarity of every image pair (exact).
        neighbours: larger pools keep, per image, only its most similar images (a sparse similarity).
        similarity_power: sharpens the image similarity (`sim ** power`); higher values make images less redundant.
        min_uncertainty: floor of a task's estimated remaining error (so that no task is written off by a noisy pilot).
    """

    dense_up_to: int = 2048
    neighbours: int = 64
    similarity_power: float = 1.0
    min_uncertainty: float = 0.05


@dataclass
class BudgetRecipe:
    """A budget allocation setting and the simulation grid run on it.

    Args:
        description: one line shown by `effhub recipes list`.
        dataset: the pool and test data (`scenes` is generated; `nyuv2`, `cityscapes`, `taskonomy` need a folder).
        dataset_options: passed to the reader (e.g. the scene generator's config).
        pool_split, test_split: the splits the pool and the test set come from.
        pool_size, test_size: use only the first N images of each (0: all).
        tasks: the tasks to label.
        costs: money per label, per task.
        budgets: the budgets of the grid.
        strategies: the allocators of the grid (`taba`, heuristics, `single:<task>`).
        seeds: the seeds of the grid (allocation choices, initial weights, data order).
        model_kind: `hard_sharing` (every task runs every block of one network, `train_steps` of training) or
            `adashare` (AdaShare learns which blocks each task runs from the cell's labels, then re-trains that
            architecture: the schedule of the AdaShare recipe `adashare_recipe`).
        model: the network (AdaShare's fields; a hard-sharing AdaShare).
        adashare_recipe: with `model_kind: adashare`, the AdaShare recipe (name or YAML path) whose warm-up,
            policy and re-training schedule every cell runs; its data and `model` are replaced by the cell's.
        adashare_overrides: `KEY=VALUE` overrides of that AdaShare recipe (e.g. `warmup_steps=500`).
        task_loss_weights: lambda per task.
        class_weight_power: balanced segmentation class weights counted on the labelled images (0: none).
        train_steps, batch_size, lr, weight_decay: the training of every cell (the same for every allocation).
        eval_batch_size: evaluation batch size.
        pilot: see `PilotRecipe`.
        taba: see `TabaRecipe`.
        workers: cells trained at once in separate processes (0: as many as the CPU cores allow).
    """

    description: str = ""
    dataset: Literal["scenes", "nyuv2", "cityscapes", "taskonomy"] = "scenes"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    pool_split: str = "train"
    test_split: str = "test"
    pool_size: int = 0
    test_size: int = 0
    tasks: list[str] = field(default_factory=lambda: ["segmentation", "depth", "normals"])
    costs: dict[str, float] = field(default_factory=lambda: {"segmentation": 10.0, "depth": 1.0, "normals": 3.0})
    budgets: list[float] = field(default_factory=lambda: [300.0, 1200.0])
    strategies: list[str] = field(default_factory=lambda: ["taba", "uniform_budget", "uniform_count"])
    seeds: list[int] = field(default_factory=lambda: [0])
    model_kind: Literal["hard_sharing", "adashare"] = "hard_sharing"
    model: AdaShareModelRecipe = field(default_factory=_demo_model)
    adashare_recipe: str = "demo"
    adashare_overrides: list[str] = field(default_factory=list)
    task_loss_weights: dict[str, float] = field(default_factory=dict)
    class_weight_power: float = 0.5
    train_steps: int = 400
    batch_size: int = 16
    lr: float = 0.003
    weight_decay: float = 1e-4
    eval_batch_size: int = 50
    pilot: PilotRecipe = field(default_factory=PilotRecipe)
    taba: TabaRecipe = field(default_factory=TabaRecipe)
    workers: int = 0


__all__ = ["BudgetRecipe", "PilotRecipe", "TabaRecipe"]
