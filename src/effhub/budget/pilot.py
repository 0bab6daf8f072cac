"""`taba`'s pilot: the first share of the budget, and what a quick model trained on its labels tells.

1. :func:`plan_pilot` picks the pilot's labels (seeded) and writes the list to label (`pilot/images.txt`) with the
   pilot's record (`pilot/pilot.json`: the pool's fingerprint, tasks, costs, the labels, the model settings). Two
   layouts (`settings["labels"]`): `equal_money` (the default) spends the same money on each task, each on its own
   random images (a cheap task gets more pilot labels, as it would under `uniform_budget`, so the pilot's labels are
   a sound first installment of the budget, half of it by default); `every_task` labels a few images for every task.
2. The user labels them, so that the pool carries their labels.
3. :func:`estimate_pilot` (run by `allocate(..., strategy="taba")`) trains the pilot model on most of them and
   measures, per task, how much error is left to learn relative to a constant prediction (`uncertainty`: by default
   the held-out loss beyond the pilot model's loss on its own training labels, the part more labels remove), how much
   a label of one task tells about another (`redundancy`: the clipped cosine of the task gradients in the shared
   trunk), and the trunk features of every pool image (the image similarity). The estimate is cached in the pilot
   folder, so allocating at several budgets trains the pilot model once.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_json, atomic_write_text
from ..errors import ConfigError, DatasetError
from .problem import BudgetProblem, pool_fingerprint

PILOT_FILE = "pilot.json"
IMAGES_FILE = "images.txt"
ESTIMATE_FILE = "estimate.json"
PILOT_LAYOUTS = ("every_task", "equal_money")
FEATURES_FILE = "features.npy"
PILOT_FORMAT = "effhub-budget-pilot"


@dataclass
class Pilot:
    """The pilot labels of a pool and how the pilot model is trained on them.

    Args:
        pool_fingerprint (`str`): the pool it was planned for.
        tasks (`tuple[str, ...]`), costs (`dict[str, float]`): the pilot's tasks and their per-label costs.
        image_ids (`list[str]`): the images to label (sorted).
        settings (`dict`): the pilot model (`model`, `steps`, `batch_size`, `lr`, `heldout_fraction`,
            `task_loss_weights`, `class_weight_power`, `num_classes`) and its layout (`labels`).
        seed (`int`): the seed of the choice.
        folder (`Path`, *optional*): where it is saved (its estimate is cached there).
    """

    pool_fingerprint: str
    tasks: tuple[str, ...]
    costs: dict[str, float]
    image_ids: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    folder: Path | None = None
    task_labels: dict[str, list[str]] | None = None
    """per task, the images labelled for it (None: every task on every image)"""

    def labels_of(self, task: str) -> list[str]:
        """The pilot images labelled for `task`."""
        return list(self.image_ids) if self.task_labels is None else list(self.task_labels[task])

    def tasks_of(self, image_id: str) -> list[str]:
        """The tasks a pilot image is labelled for."""
        return [task for task in self.tasks if self.task_labels is None or image_id in self.task_labels[task]]

    @property
    def spend(self) -> float:
        """The money the pilot's labels cost."""
        return sum(len(self.labels_of(task)) * self.costs[task] for task in self.tasks)

    def check_pool(self, fingerprint: str) -> None:
        if fingerprint != self.pool_fingerprint:
            raise DatasetError(f"The pilot was planned for pool {self.pool_fingerprint}, this pool is {fingerprint}",
                               "use the pool the pilot was planned on, or plan a new pilot for this pool")

    def check_problem(self, problem: BudgetProblem) -> None:
        if tuple(problem.tasks) != tuple(self.tasks):
            raise ConfigError(f"The pilot labels the tasks {list(self.tasks)}, the problem has {list(problem.tasks)}",
                              "allocate for the pilot's tasks, or plan a pilot for these tasks")
        if any(abs(problem.costs[t] - self.costs[t]) > 1e-9 for t in self.tasks):
            raise ConfigError(f"The pilot's costs {self.costs} differ from the problem's {dict(problem.costs)}",
                              "use the same per-label costs")
        if self.spend > problem.budget:
            raise ConfigError(f"The pilot's labels cost {self.spend:g}, more than the budget {problem.budget:g}",
                              "raise the budget or plan a smaller pilot (--fraction)")

    def to_dict(self) -> dict[str, Any]:
        return {"format": PILOT_FORMAT, "pool_fingerprint": self.pool_fingerprint, "tasks": list(self.tasks),
                "costs": dict(self.costs), "image_ids": list(self.image_ids), "spend": self.spend,
                "task_labels": None if self.task_labels is None else {t: list(v) for t, v in self.task_labels.items()},
                "settings": self.settings, "seed": self.seed}

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `pilot.json` and `images.txt` into `folder`: one image per line, its id alone when it is to be
        labelled for every task, else its id, a tab and the comma-separated tasks to label it for."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for image_id in self.image_ids:
            tasks = self.tasks_of(image_id)
            lines.append(image_id if len(tasks) == len(self.tasks) else f"{image_id}\t{','.join(tasks)}")
        atomic_write_text(folder / IMAGES_FILE, "".join(f"{line}\n" for line in lines))
        atomic_write_json(folder / PILOT_FILE, self.to_dict())
        self.folder = folder
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> Pilot:
        """Read a pilot folder (or its `pilot.json`)."""
        path = Path(path)
        file = path / PILOT_FILE if path.is_dir() else path
        if not file.is_file():
            raise ConfigError(f"'{path}' holds no {PILOT_FILE}", "pass the --output folder of `effhub budget pilot`")
        try:
            mapping = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ConfigError(f"'{file}' is not valid JSON ({error})", "plan the pilot again") from error
        if mapping.get("format") != PILOT_FORMAT:
            raise ConfigError(f"'{file}' is not an effhub pilot", "pass the folder `effhub budget pilot` wrote")
        task_labels = mapping.get("task_labels")
        return cls(pool_fingerprint=mapping["pool_fingerprint"], tasks=tuple(mapping["tasks"]),
                   costs={k: float(v) for k, v in mapping["costs"].items()}, image_ids=list(mapping["image_ids"]),
                   settings=dict(mapping.get("settings") or {}), seed=int(mapping.get("seed", 0)), folder=file.parent,
                   task_labels=None if task_labels is None else {t: list(v) for t, v in task_labels.items()})


def pilot_settings(recipe=None, num_classes: int | None = None) -> dict[str, Any]:
    """The pilot model's settings from a `BudgetRecipe` (the `demo` recipe's when None)."""
    from ..recipes import load_recipe, recipe_to_dict

    recipe = recipe or load_recipe("budget", "demo")
    return {"model": recipe_to_dict(recipe.model), "steps": recipe.pilot.steps, "batch_size": recipe.pilot.batch_size,
            "lr": recipe.pilot.lr, "heldout_fraction": recipe.pilot.heldout_fraction,
            "task_loss_weights": dict(recipe.task_loss_weights), "class_weight_power": recipe.class_weight_power,
            "weight_decay": recipe.weight_decay, "num_classes": num_classes, "min_images": recipe.pilot.min_images,
            "labels": recipe.pilot.labels, "uncertainty": recipe.pilot.uncertainty}


def plan_pilot(pool, tasks: Sequence[str], costs, fraction: float | None = None, budget: float | None = None,
               seed: int = 0, output: str | os.PathLike | None = None, settings: Mapping | None = None) -> Pilot:
    """Choose the pilot labels of `pool` (seeded, at random) in the layout `settings["labels"]`.

    `equal_money` (the demo recipe's, so the layout when `settings` is None): the same money per task, each task's
    labels on its own images (no image gets two pilot labels); at least `min_images` labels of the costliest task,
    and as much money on every other task. `every_task` (also when `settings` names no layout, as pilots saved before
    the layouts did): a few images, each to be labelled for every task; at least `min_images`.

    Args:
        pool (`datasets.Dataset`): the unlabeled pool.
        tasks, costs: the tasks and their per-label costs (as in `BudgetProblem`).
        fraction (`float`, *optional*): with `budget`, the share of the budget the pilot spends; without it, the
            share of the pool's images (`every_task`) or of the pool's full labelling cost (`equal_money`). Default:
            the demo recipe's `pilot.fraction` (0.5).
        budget (`float`, *optional*): the budget of the allocation to come.
        seed (`int`, defaults to 0): the seed of the choice.
        output (`str`, *optional*): the folder to save the pilot into (`pilot.json`, `images.txt`).
        settings (`dict`, *optional*): the pilot model and layout (see :func:`pilot_settings`).
    """
    if fraction is None:
        from ..recipes import load_recipe

        fraction = load_recipe("budget", "demo").pilot.fraction
    if not 0.0 < float(fraction) < 1.0:
        raise ConfigError(f"The pilot fraction {fraction} is outside (0, 1)", "pass e.g. --fraction 0.5")
    problem = BudgetProblem(tasks=tasks, costs=costs, budget=budget if budget is not None else 1e300)  # checks tasks, costs
    ids = problem.check_pool(pool)
    settings = dict(settings or pilot_settings())
    layout = settings.get("labels", "every_task")
    if layout not in PILOT_LAYOUTS:
        raise ConfigError(f"Unknown pilot layout '{layout}'", f"use one of {list(PILOT_LAYOUTS)}")
    minimum = int(settings.get("min_images", 4))
    if layout == "equal_money":
        return _plan_equal_money(problem, ids, fraction, budget, seed, output, settings, minimum)
    if budget is not None:
        count = math.floor(fraction * budget / problem.full_labeling_cost + 1e-9)
    else:
        count = round(fraction * len(ids))
    count = min(max(count, minimum), len(ids))
    if budget is not None and count * problem.full_labeling_cost > budget:
        raise ConfigError(
            f"A pilot of {count} image(s) labelled for every task costs {count * problem.full_labeling_cost:g}, "
            f"more than the budget {budget:g}", "raise the budget, or use a heuristic strategy without a pilot")
    order = np.random.default_rng(seed).permutation(len(ids))
    chosen = sorted(ids)
    pilot = Pilot(pool_fingerprint=pool_fingerprint(ids), tasks=problem.tasks, costs=dict(problem.costs),
                  image_ids=sorted(chosen[i] for i in order[:count]), settings=settings, seed=int(seed))
    if output is not None:
        pilot.save(output)
    return pilot


def equal_money_counts(costs: Sequence[float], money_per_task: float, minimum: int) -> list[int]:
    """Labels per task of an `equal_money` pilot: `money_per_task` on each task, but at least `minimum` labels of the
    costliest task and as much money on every other task."""
    money = max(money_per_task, minimum * max(costs))
    return [int(math.floor(money / cost + 1e-9)) for cost in costs]


def least_pilot_cost(costs: Sequence[float], layout: str, minimum: int) -> float:
    """The least a pilot of `layout` with `minimum` (`min_images`) can cost, whatever the budget."""
    if layout == "equal_money":
        return sum(count * cost for count, cost in zip(equal_money_counts(costs, 0.0, minimum), costs))
    return minimum * sum(costs)


def _plan_equal_money(problem: BudgetProblem, ids: list[str], fraction: float, budget: float | None, seed: int,
                      output, settings: dict, minimum: int) -> Pilot:
    """The `equal_money` pilot of :func:`plan_pilot`."""
    costs = [problem.costs[task] for task in problem.tasks]
    total = fraction * (budget if budget is not None else len(ids) * problem.full_labeling_cost)
    counts = equal_money_counts(costs, total / len(costs), minimum)
    if sum(counts) > len(ids):
        raise ConfigError(f"An equal-money pilot of {sum(counts)} labels on separate images does not fit the pool of "
                          f"{len(ids)} images", "lower the pilot fraction or use pilot labels: every_task")
    spend = sum(count * cost for count, cost in zip(counts, costs))
    if budget is not None and spend > budget:
        raise ConfigError(f"An equal-money pilot with {minimum} label(s) of the costliest task costs {spend:g}, more "
                          f"than the budget {budget:g}", "raise the budget, lower pilot min_images, or use a "
                          "heuristic strategy without a pilot")
    order = np.random.default_rng(seed).permutation(len(ids))
    chosen = sorted(ids)
    task_labels, offset = {}, 0
    for task, count in zip(problem.tasks, counts):
        task_labels[task] = sorted(chosen[i] for i in order[offset:offset + count])
        offset += count
    pilot = Pilot(pool_fingerprint=pool_fingerprint(ids), tasks=problem.tasks, costs=dict(problem.costs),
                  image_ids=sorted(chosen[i] for i in order[:offset]), settings=settings, seed=int(seed),
                  task_labels=task_labels)
    if output is not None:
        pilot.save(output)
    return pilot


@dataclass
class PilotEstimate:
    """What the pilot model tells (see the module docstring).

    Args:
        uncertainty (`dict[str, float]`): per task, the held-out error left relative to a constant prediction.
        redundancy (`list[list[float]]`): `R[s][t]` in the task order: how much a label of task s tells about t.
        features (`np.ndarray` of shape `(N, C)`): trunk features of the pool's images, in `ids` order.
        ids (`list[str]`): the pool's ids, the rows of `features`.
        details (`dict`): the losses behind `uncertainty`, seconds, the pilot split.
    """

    uncertainty: dict[str, float]
    redundancy: list[list[float]]
    features: Any
    ids: list[str]
    details: dict[str, Any] = field(default_factory=dict)


def _cache_key(pilot: Pilot, seed: int) -> dict:
    key = {"pool_fingerprint": pilot.pool_fingerprint, "image_ids": pilot.image_ids, "settings": pilot.settings,
           "tasks": list(pilot.tasks), "seed": seed}
    if pilot.task_labels is not None:
        key["task_labels"] = pilot.task_labels
    return key


def _load_cached(pilot: Pilot, seed: int) -> PilotEstimate | None:
    if pilot.folder is None:
        return None
    estimate_file, features_file = pilot.folder / ESTIMATE_FILE, pilot.folder / FEATURES_FILE
    if not (estimate_file.is_file() and features_file.is_file()):
        return None
    try:
        mapping = json.loads(estimate_file.read_text(encoding="utf-8"))
        features = np.load(features_file)
    except (ValueError, OSError):
        return None
    if mapping.get("key") != json.loads(json.dumps(_cache_key(pilot, seed))):
        return None
    return PilotEstimate(mapping["uncertainty"], mapping["redundancy"], features, mapping["ids"],
                         mapping.get("details", {}))


def _positions(pool_id_list: Sequence[str], wanted: Sequence[str]) -> list[int]:
    where = {identifier: index for index, identifier in enumerate(pool_id_list)}
    return [where[i] for i in wanted]


def check_pilot_labels(pilot: Pilot, pilot_data) -> None:
    """Refuse a pool whose pilot images lack one of their pilot labels."""
    unlabeled = []
    for row in pilot_data:
        mask = row.get("label_mask") or {}
        for task in pilot.tasks_of(row["id"]):
            if row.get(task) is None or not mask.get(task, True):
                unlabeled.append((row["id"], task))
    if unlabeled:
        raise DatasetError(f"{len(unlabeled)} pilot label(s) are missing from the pool (e.g. {unlabeled[:3]})",
                           "label every pilot image (pilot/images.txt) for its tasks, then allocate again")


def estimate_pilot(pilot: Pilot, pool, seed: int = 0, progress: bool | None = None,
                   output_dir: str | os.PathLike | None = None) -> PilotEstimate:
    """Train the pilot model on the pilot images' labels in `pool` and measure uncertainty, redundancy and the
    pool's features (cached in the pilot's folder).

    Args:
        pilot (`Pilot`): the pilot, planned on `pool`.
        pool (`datasets.Dataset`): the pool, carrying the pilot images' labels.
        seed (`int`): the pilot model's seed.
        progress (`bool`, *optional*): progress bars.
        output_dir (`str`, *optional*): the run folder of the pilot model (default: `<pilot folder>/model-seed<seed>`,
            or a temporary folder for a pilot that is not saved).
    """
    from ..models.adashare.recipe_adashare import AdaShareModelRecipe
    from ..recipes import build_dataclass
    from ..training import Run, RunOptions
    from .problem import pool_ids
    from .training_budget import (
        build_model,
        class_weights_of,
        pooled_features,
        task_channels,
        training_phase,
    )

    ids = pool_ids(pool)
    pilot.check_pool(pool_fingerprint(ids))
    cached = _load_cached(pilot, seed)
    if cached is not None and list(cached.ids) == list(ids):
        return cached
    start = time.perf_counter()
    settings = pilot.settings or pilot_settings()
    tasks = list(pilot.tasks)
    pilot_data = pool.select(_positions(ids, pilot.image_ids))
    check_pilot_labels(pilot, pilot_data)
    rng = np.random.default_rng(seed)
    if pilot.task_labels is None:  # every task on every image: hold out a share of the images
        order = rng.permutation(len(pilot.image_ids))
        heldout_count = round(settings["heldout_fraction"] * len(order)) if len(order) >= 4 else 0
        heldout_positions, train_positions = sorted(order[:heldout_count]), sorted(order[heldout_count:])
        train_data = pilot_data.select(train_positions)
        heldout_data = pilot_data.select(heldout_positions) if heldout_count else train_data
        train_of, heldout_of = dict.fromkeys(tasks, train_data), dict.fromkeys(tasks, heldout_data)
    else:  # each task on its own images: hold out a share of each task's images, the other tasks' labels masked
        from .problem import Allocation

        pilot_problem = BudgetProblem(tasks, pilot.costs, budget=pilot.spend)
        pilot_data = Allocation(pilot_problem, pilot.task_labels, pool_fingerprint(pilot.image_ids),
                                "pilot").apply(pilot_data)
        where = {identifier: index for index, identifier in enumerate(pilot.image_ids)}
        heldout_by_task, train_by_task = {}, {}
        for task in tasks:
            positions = [where[i] for i in pilot.labels_of(task)]
            positions = [positions[k] for k in rng.permutation(len(positions))]
            count = max(1, round(settings["heldout_fraction"] * len(positions))) if len(positions) >= 2 else 0
            heldout_by_task[task], train_by_task[task] = sorted(positions[:count]), sorted(positions[count:])
        train_positions = sorted(set().union(*train_by_task.values()))
        heldout_count = len(set().union(*heldout_by_task.values()))
        train_data = pilot_data.select(train_positions)
        train_of = {task: pilot_data.select(train_by_task[task]) for task in tasks}
        heldout_of = {task: pilot_data.select(heldout_by_task[task]) if heldout_by_task[task] else train_of[task]
                      for task in tasks}
    channels = task_channels(pool, tasks, settings.get("num_classes"))
    model_recipe = build_dataclass(AdaShareModelRecipe, dict(settings["model"]), "pilot model")
    weights = class_weights_of(train_data, tasks, channels.get("segmentation", 0), settings["class_weight_power"]) \
        if "segmentation" in channels else None
    model = build_model(model_recipe, channels, seed, settings.get("task_loss_weights"), weights)
    phase = training_phase(model, settings["steps"], settings["batch_size"], settings["lr"],
                           settings.get("weight_decay", 1e-4), name="pilot")
    from .training_budget import make_collator

    temporary = None
    if output_dir is None:
        if pilot.folder is not None:
            output_dir = pilot.folder / f"model-seed{seed}"
        else:
            temporary = tempfile.TemporaryDirectory(prefix="effhub-pilot-")
            output_dir = temporary.name
    options = RunOptions(output_dir=output_dir, seed=seed, resume=Path(output_dir, "run_info.json").is_file(),
                         overwrite=True, progress=progress if progress is not None else True)
    try:
        with Run(options, method="budget", seed=seed, recipe={"pilot": _cache_key(pilot, seed)}) as run:
            model = run.train_stage("pilot", model, [phase], {"train": train_data}, collate_fn=make_collator(tasks),
                                    phase_end_checkpoints=False).model
        uncertainty, losses = _uncertainty(model, train_of, heldout_of, tasks, channels,
                                           settings.get("min_uncertainty", 0.05),
                                           settings.get("uncertainty", "heldout"))
        redundancy = _redundancy(model, train_data, tasks)
        features = pooled_features(model, pool)
    finally:
        if temporary is not None:
            temporary.cleanup()
    details = {"losses": losses, "train_images": len(train_positions), "heldout_images": heldout_count,
               "heldout_is_train": heldout_count == 0, "seconds": time.perf_counter() - start}
    estimate = PilotEstimate(uncertainty, redundancy, features, list(ids), details)
    if pilot.folder is not None:
        np.save(pilot.folder / FEATURES_FILE, features)
        atomic_write_json(pilot.folder / ESTIMATE_FILE, {
            "key": _cache_key(pilot, seed), "uncertainty": uncertainty, "redundancy": redundancy, "ids": list(ids),
            "details": details})
    return estimate


def _batch(dataset, tasks):
    from .training_budget import make_collator

    return make_collator(tasks)([dataset[i] for i in range(len(dataset))])


def _uncertainty(model, train_of, heldout_of, tasks, channels, floor: float, kind_of_estimate: str = "heldout"):
    """Per task, clipped to [floor, 1] and relative to the held-out loss of a constant prediction fit on the pilot's
    training images (unweighted losses): `heldout`, the pilot model's held-out loss; `gap`, its held-out loss minus
    its loss on its own training labels (the error that the pilot's labels did not generalise, which more labels
    remove; a task whose held-out loss is down to its training loss has little left to gain from labels; a task
    with no held-out label, too few pilot labels to spare one, is taken as having everything left, 1).
    `train_of` / `heldout_of` map each task to the pilot images labelled for it (training and held out; the same
    data set when none is held out)."""
    import torch

    from ..multitask import task_loss

    model.eval()
    batches, predictions = {}, {}  # per data set: with every task on every image, all tasks share one of each

    def batch_of(dataset):
        if id(dataset) not in batches:
            batches[id(dataset)] = _batch(dataset, tasks)
        return batches[id(dataset)]

    uncertainty, losses = {}, {}
    for task in tasks:
        train, heldout = batch_of(train_of[task]), batch_of(heldout_of[task])
        if id(heldout_of[task]) not in predictions:
            with torch.no_grad():
                predictions[id(heldout_of[task])] = model(heldout["pixel_values"], policy_mode="fixed").logits
        logits = predictions[id(heldout_of[task])]
        kind = "regression" if task in ("keypoints", "edges") else task
        prediction = logits[task]
        model_loss = float(task_loss(prediction, heldout["labels"][task], kind))
        constant = _constant_prediction(train["labels"][task], task, channels[task], prediction.shape)
        trivial_loss = float(task_loss(constant, heldout["labels"][task], kind))
        if id(train_of[task]) not in predictions:
            with torch.no_grad():
                predictions[id(train_of[task])] = model(train["pixel_values"], policy_mode="fixed").logits
        train_loss = float(task_loss(predictions[id(train_of[task])][task], train["labels"][task], kind))
        remaining = model_loss - train_loss if kind_of_estimate == "gap" else model_loss
        ratio = remaining / trivial_loss if trivial_loss > 0 else 1.0
        if kind_of_estimate == "gap" and heldout_of[task] is train_of[task]:
            ratio = 1.0
        uncertainty[task] = float(min(1.0, max(floor, ratio)))
        losses[task] = {"model": model_loss, "constant": trivial_loss, "train": train_loss}
    return uncertainty, losses


def _constant_prediction(labels, task, channels, shape):
    import torch

    if task == "segmentation":
        values = labels[labels != 255].long()
        frequency = torch.bincount(values, minlength=channels).float() + 1.0
        logits = (frequency / frequency.sum()).log()
        return logits.view(1, -1, 1, 1).expand(shape[0], -1, *shape[2:]).clone()
    if task == "normals":
        valid = labels.norm(dim=1, keepdim=True) > 0
        mean = (labels * valid).sum(dim=(0, 2, 3)) / valid.sum().clamp_min(1)
        return mean.view(1, 3, 1, 1).expand(shape[0], 3, *shape[2:]).clone()
    valid = labels > 0 if task == "depth" else labels != 255
    mean = labels[valid].mean() if valid.any() else labels.new_tensor(0.0)
    return torch.full(tuple(shape), float(mean))


def _redundancy(model, train_data, tasks) -> list[list[float]]:
    """`R[s][t]`: the cosine of the gradients of tasks s and t on the shared trunk, clipped to [0, 1] (R[t][t] = 1)."""
    import torch

    # up to 32 images per task (the first ones; with every task on every image, simply the first 32)
    from .training_budget import rows_with_columns

    masks = [row.get("label_mask") or {} for row in rows_with_columns(train_data, ["label_mask"])]
    rows = set()
    for task in tasks:
        rows.update([row for row, mask in enumerate(masks) if mask.get(task, True)][:32])
    batch = _batch(train_data.select(sorted(rows)), tasks)
    model.train()
    trunk = [p for p in model.backbone.parameters() if p.requires_grad]
    gradients = []
    output = model(batch["pixel_values"], labels=batch["labels"], label_mask=batch["label_mask"], policy_mode="fixed")
    for index, task in enumerate(tasks):
        grads = torch.autograd.grad(output.task_losses[task], trunk, retain_graph=index < len(tasks) - 1,
                                    allow_unused=True)
        gradients.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                    for g, p in zip(grads, trunk)]))
    model.eval()
    matrix = []
    for s, gs in enumerate(gradients):
        row = []
        for t, gt in enumerate(gradients):
            if s == t:
                row.append(1.0)
            else:
                cosine = float(torch.nn.functional.cosine_similarity(gs, gt, dim=0))
                row.append(min(1.0, max(0.0, cosine)))
        matrix.append(row)
    return matrix


__all__ = ["PILOT_LAYOUTS", "Pilot", "PilotEstimate", "check_pilot_labels", "equal_money_counts", "estimate_pilot",
           "least_pilot_cost", "pilot_settings", "plan_pilot"]
