"""The label budget allocation problem and its answer (Sun et al., "Label Budget Allocation in Multi-Task Learning",
arXiv 2308.12949).

A :class:`BudgetProblem` names the tasks, the money one label of each task costs and the budget. An
:class:`Allocation` says which image of a pool gets which task's label, what that spends per task, and how it was
chosen; it round-trips through JSON and applies to a `datasets.Dataset` as label masks, which the multi-task losses
(`effhub.multitask`) and the dense collator honour.

A pool is identified by a fingerprint of its image ids (:func:`pool_fingerprint`), so that an allocation or a pilot
made for one pool is refused on another.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DatasetError, TaskError

ALLOCATION_FORMAT = "effhub-label-allocation"
ALLOCATION_VERSION = 1


def pool_ids(pool) -> list[str]:
    """The image ids of `pool` (a dense `datasets.Dataset` with an `id` column, or a sequence of ids), in order."""
    from ..data.dense.schema import dataset_ids

    ids = dataset_ids(pool)
    if len(set(ids)) != len(ids):
        raise DatasetError("The pool's image ids are not unique", "give every image of the pool a distinct id")
    if not ids:
        raise DatasetError("The pool holds no image", "pass a data set with at least one image")
    return ids


def pool_fingerprint(ids: Sequence[str]) -> str:
    """A short fingerprint of a pool: SHA-256 of its sorted ids (the order of the rows does not matter)."""
    digest = hashlib.sha256("\n".join(sorted(str(i) for i in ids)).encode("utf-8")).hexdigest()
    return f"{len(ids)}-{digest[:16]}"


def pool_tasks(pool) -> list[str] | None:
    """The dense tasks a pool carries labels (or label files) for, or None when it is a bare list of ids."""
    from ..data.dense.schema import DENSE_TASKS

    columns = getattr(pool, "column_names", None)
    if columns is None:
        return None
    return [task for task in DENSE_TASKS if task in columns or f"{task}_path" in columns]


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{what} is {value!r}, not a number", f"pass a positive number for {what}") from None
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{what} is {value}", f"pass a finite number for {what}")
    return value


@dataclass(frozen=True)
class BudgetProblem:
    """Tasks, the cost of one label of each task, and the budget to spend.

    Args:
        tasks (`Sequence[str]`): the tasks to label, e.g. `("segmentation", "depth", "normals")`.
        costs (`Mapping[str, float]` or `Sequence[float]`): the money one image's label costs, per task (a sequence
            in the order of `tasks`). Any unit: only ratios and the budget's unit matter.
        budget (`float`): the money to spend, in the unit of `costs`.

    Raises:
        `TaskError`: no tasks, repeated tasks, or costs for other tasks.
        `ConfigError`: a non-positive or non-finite cost, or a budget below the cheapest label.

    Example:
        >>> BudgetProblem(tasks=["segmentation", "depth"], costs=[10, 1], budget=500).cost_of("segmentation")
        10.0
    """

    tasks: tuple[str, ...]
    costs: Mapping[str, float]
    budget: float

    def __post_init__(self):
        tasks = (self.tasks,) if isinstance(self.tasks, str) else tuple(str(t) for t in self.tasks)
        if not tasks:
            raise TaskError("The budget problem names no task", "pass tasks such as ['segmentation', 'depth']")
        if len(set(tasks)) != len(tasks):
            raise TaskError(f"The tasks {list(tasks)} repeat a name", "name every task once")
        costs = self.costs
        if not isinstance(costs, Mapping):
            costs = list(costs) if not isinstance(costs, str) else [costs]
            if len(costs) != len(tasks):
                raise ConfigError(f"{len(costs)} cost(s) for {len(tasks)} task(s) {list(tasks)}",
                                  "give one cost per task, in the order of the tasks")
            costs = dict(zip(tasks, costs))
        unknown = sorted(set(costs) - set(tasks))
        missing = [task for task in tasks if task not in costs]
        if unknown or missing:
            raise TaskError(f"costs are given for {sorted(costs)}, the tasks are {list(tasks)}",
                            "give exactly one cost per task")
        checked = {}
        for task in tasks:
            value = _number(costs[task], f"the cost of a '{task}' label")
            if value <= 0:
                raise ConfigError(f"The cost of a '{task}' label is {value:g}; costs must be positive",
                                  "give every task a positive per-label cost (e.g. 10,1,3)")
            checked[task] = value
        budget = _number(self.budget, "the budget")
        cheapest = min(checked.values())
        if budget < cheapest:
            raise ConfigError(f"The budget {budget:g} is below the cheapest label ({cheapest:g}); nothing can be bought",
                              f"raise the budget to at least {cheapest:g}")
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "costs", checked)
        object.__setattr__(self, "budget", budget)

    def cost_of(self, task: str) -> float:
        """The cost of one `task` label."""
        if task not in self.costs:
            raise TaskError(f"'{task}' is not a task of this problem ({list(self.tasks)})",
                            f"use one of {list(self.tasks)}")
        return self.costs[task]

    @property
    def full_labeling_cost(self) -> float:
        """The cost of one image labelled for every task."""
        return sum(self.costs.values())

    def check_pool(self, pool) -> list[str]:
        """Check that `pool` carries every task of the problem and return its ids."""
        ids = pool_ids(pool)
        available = pool_tasks(pool)
        if available is not None:
            unknown = [task for task in self.tasks if task not in available]
            if unknown:
                raise TaskError(f"The pool has no task(s) {unknown} (its tasks: {available})",
                                f"use tasks among {available}")
        return ids

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": list(self.tasks), "costs": dict(self.costs), "budget": self.budget}

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> BudgetProblem:
        missing = {"tasks", "costs", "budget"} - set(mapping)
        if missing:
            raise ConfigError(f"The budget problem record lacks {sorted(missing)}",
                              "write it with BudgetProblem.to_dict()")
        return cls(tasks=tuple(mapping["tasks"]), costs=dict(mapping["costs"]), budget=mapping["budget"])


@dataclass
class Allocation:
    """Which image of a pool gets which task's label, and what that spends.

    Args:
        problem (`BudgetProblem`): the problem it answers.
        labels (`dict[str, list[str]]`): per task, the ids of the images that get its label.
        pool_fingerprint (`str`): the fingerprint of the pool it was made for (see :func:`pool_fingerprint`).
        strategy (`str`): the allocator that made it.
        details (`dict`): what the allocator records (pilot ids, estimates, the information curve, notes).
    """

    problem: BudgetProblem
    labels: dict[str, list[str]]
    pool_fingerprint: str
    strategy: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        unknown = sorted(set(self.labels) - set(self.problem.tasks))
        if unknown:
            raise TaskError(f"The allocation labels unknown task(s) {unknown}", f"use tasks of {list(self.problem.tasks)}")
        self.labels = {task: sorted({str(i) for i in self.labels.get(task, ())}) for task in self.problem.tasks}

    # -- what it spends ----------------------------------------------------------------------------------------------
    @property
    def counts(self) -> dict[str, int]:
        """Labels per task."""
        return {task: len(ids) for task, ids in self.labels.items()}

    @property
    def spend(self) -> dict[str, float]:
        """Money per task."""
        return {task: len(ids) * self.problem.costs[task] for task, ids in self.labels.items()}

    @property
    def total_spend(self) -> float:
        return float(sum(self.spend.values()))

    @property
    def labeled_images(self) -> list[str]:
        """The ids of the images with at least one label."""
        return sorted(set().union(*map(set, self.labels.values())))

    def check(self) -> None:
        """Raise `ConfigError` when the allocation spends more than its budget."""
        if self.total_spend > self.problem.budget * (1 + 1e-9):
            raise ConfigError(f"The allocation spends {self.total_spend:g}, over its budget {self.problem.budget:g}",
                              "drop labels, or raise the budget")

    def summary(self) -> str:
        """One line per task: labels, spend and share of the budget."""
        lines = [(f"strategy {self.strategy}: {self.total_spend:g} of {self.problem.budget:g} spent, "
                  f"{len(self.labeled_images)} image(s) labelled")]
        for task in self.problem.tasks:
            spend = self.spend[task]
            lines.append(f"  {task:14s} {self.counts[task]:7d} labels x {self.problem.costs[task]:g} = {spend:10g} "
                         f"({100 * spend / self.problem.budget:5.1f}% of the budget)")
        return "\n".join(lines)

    # -- JSON ---------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": ALLOCATION_FORMAT, "version": ALLOCATION_VERSION, "strategy": self.strategy,
                "problem": self.problem.to_dict(), "pool_fingerprint": self.pool_fingerprint,
                "spend": self.spend, "counts": self.counts, "labels": self.labels, "details": self.details}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> Allocation:
        if mapping.get("format") != ALLOCATION_FORMAT:
            raise ConfigError("The JSON is not an effhub label allocation (no 'format' field of that name)",
                              "pass a file written by `effhub budget allocate` or Allocation.save")
        if int(mapping.get("version", 0)) > ALLOCATION_VERSION:
            raise ConfigError(f"The allocation has format version {mapping['version']}, newer than this effhub's "
                              f"{ALLOCATION_VERSION}", "upgrade effhub")
        allocation = cls(problem=BudgetProblem.from_dict(mapping["problem"]), labels=dict(mapping["labels"]),
                         pool_fingerprint=str(mapping["pool_fingerprint"]), strategy=str(mapping["strategy"]),
                         details=dict(mapping.get("details") or {}))
        allocation.check()
        return allocation

    @classmethod
    def from_json(cls, text: str) -> Allocation:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as error:
            raise ConfigError(f"The allocation is not valid JSON ({error})", "re-create it") from error

    def save(self, path: str | os.PathLike) -> Path:
        """Write the allocation as JSON, atomically."""
        from ..atomic import atomic_write_text

        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Allocation:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Allocation file '{path}' does not exist", "pass the JSON `effhub budget allocate` wrote")
        return cls.from_json(path.read_text(encoding="utf-8"))

    # -- application --------------------------------------------------------------------------------------------------
    def check_pool(self, dataset) -> list[str]:
        """Refuse a data set other than the pool this allocation was made for; return its ids."""
        ids = pool_ids(dataset)
        found = pool_fingerprint(ids)
        if found != self.pool_fingerprint:
            raise DatasetError(
                f"The allocation was made for pool {self.pool_fingerprint}, the data set is pool {found} "
                f"({len(ids)} images)", "apply it to the pool it was allocated on, or allocate again on this pool")
        return ids

    def mask(self, ids: Sequence[str]) -> dict[str, list[bool]]:
        """Per task, one bool per id of `ids`: does the image get the task's label."""
        return {task: [i in chosen for i in ids] for task, chosen in
                ((task, set(self.labels[task])) for task in self.problem.tasks)}

    def apply(self, dataset, drop_unlabeled: bool = False):
        """The data set with this allocation's labels only: `label_mask[task]` is False for every (image, task) pair
        the allocation does not buy (and for labels the data set never had).

        On a materialised data set (e.g. the generated scenes) the `label_mask` column is replaced; on a lazily
        decoded reader (NYU-v2, CityScapes, Taskonomy) the label files of pairs not bought are blanked, so the reader
        decodes them as missing. Either way the dense collator's `label_mask` and the label-masked multi-task losses
        see only the bought labels. Tasks of the data set outside the problem keep their labels.

        Args:
            dataset (`datasets.Dataset`): the pool the allocation was made for.
            drop_unlabeled (`bool`, defaults to `False`): also drop the images that get no label.
        """
        ids = self.check_pool(dataset)
        masks = self.mask(ids)
        transform = (dataset.format or {}).get("format_kwargs", {}).get("transform") \
            if (dataset.format or {}).get("type") == "custom" else None
        path_columns = [f"{task}_path" for task in self.problem.tasks if f"{task}_path" in dataset.column_names]
        if transform is not None and path_columns:
            result = dataset.with_format(None)
            for task in self.problem.tasks:
                column = f"{task}_path"
                if column not in result.column_names:
                    continue
                values = [path if keep else "" for path, keep in zip(result[column], masks[task])]
                result = result.remove_columns(column).add_column(column, values)
            result.set_transform(transform)
        else:
            import datasets

            fmt = dataset.format
            plain = dataset.with_format(None)
            if "label_mask" in plain.column_names:
                old = plain["label_mask"]
                old_tasks = list(plain.features["label_mask"]) if isinstance(plain.features["label_mask"], dict) \
                    else sorted({k for row in old for k in (row or {})})
            else:
                old, old_tasks = [None] * len(ids), []
            all_tasks = list(dict.fromkeys([*old_tasks, *self.problem.tasks]))
            rows = []
            for index, previous in enumerate(old):
                previous = previous or {}
                row = {}
                for task in all_tasks:
                    had = bool(previous.get(task, task in plain.column_names))
                    row[task] = had and masks[task][index] if task in masks else had
                rows.append(row)
            feature = {task: datasets.Value("bool") for task in all_tasks}
            if "label_mask" in plain.column_names:
                plain = plain.remove_columns("label_mask")
            result = plain.add_column("label_mask", rows, feature=datasets.Features(feature)) \
                if _add_column_takes_feature() else plain.add_column("label_mask", rows)
            if fmt.get("type") is not None:
                columns = fmt.get("columns")
                if columns is not None:
                    columns = [c for c in columns if c in result.column_names]
                result = result.with_format(fmt["type"], columns=columns,
                                            output_all_columns=fmt.get("output_all_columns", False),
                                            **fmt.get("format_kwargs", {}))
        if drop_unlabeled:
            keep = [index for index in range(len(ids)) if any(masks[task][index] for task in self.problem.tasks)]
            result = result.select(keep)
        return result


def _add_column_takes_feature() -> bool:
    import inspect

    import datasets

    return "feature" in inspect.signature(datasets.Dataset.add_column).parameters


__all__ = ["Allocation", "BudgetProblem", "pool_fingerprint", "pool_ids", "pool_tasks"]
