"""Allocators: `taba` (effhub's reconstruction of Task-Adaptive Budget Allocation) and the heuristic labelling
strategies it is compared with.

Every heuristic decides how many labels each task gets, then which images (seeded, so that the same seed gives the
same images). With costs `c_t`, budget `B` and `T` tasks:

| strategy | labels per task `n_t` | images |
| --- | --- | --- |
| `uniform_count` | equal counts, `n = B / sum(c)` | independent random images per task |
| `uniform_budget` | equal money per task, `n_t = B / (T c_t)` | independent random images per task |
| `cost_proportional` | counts proportional to cost, `n_t ~ c_t` (money `~ c_t^2`: the costly task matters most) | independent random images per task |
| `inverse_cost` | money inversely proportional to cost, `n_t ~ 1 / c_t^2` (cheap labels first) | independent random images per task |
| `full_labeling` | equal counts | all tasks on the same (fewest) images |
| `disjoint` | equal counts | one task per image (disjoint image sets while the pool allows) |
| `random` | random (image, task) pairs while the budget allows | |
| `single:<task>` | the whole budget on one task | random images |

A task's count never exceeds the pool; what a capped task cannot spend goes to the others (water-filling).
`taba` needs a pilot (:mod:`effhub.budget.pilot`); see :mod:`effhub.budget.taba`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from .problem import Allocation, BudgetProblem, pool_fingerprint

HEURISTICS = ("uniform_count", "uniform_budget", "cost_proportional", "inverse_cost", "full_labeling", "disjoint",
              "random")
STRATEGIES = ("taba", *HEURISTICS, "single:<task>")
"""Every strategy name :func:`allocate` accepts (`single:<task>` with one of the problem's tasks)."""


def _counts_from_money_weights(problem: BudgetProblem, weights: Mapping[str, float], pool_size: int,
                               budget: float | None = None) -> dict[str, int]:
    """Labels per task when the budget is split in proportion to `weights` (money), each task capped at the pool
    size; money a capped task cannot use goes to the others in proportion to their weights."""
    budget = problem.budget if budget is None else budget
    counts = {task: 0 for task in problem.tasks}
    open_tasks = [task for task in problem.tasks if weights[task] > 0]
    remaining = budget
    while open_tasks and remaining > 0:
        total = sum(weights[task] for task in open_tasks)
        capped = []
        for task in open_tasks:
            share = remaining * weights[task] / total
            if share / problem.costs[task] >= pool_size - counts[task]:
                capped.append(task)
        if not capped:
            for task in open_tasks:
                counts[task] += math.floor(remaining * weights[task] / total / problem.costs[task] + 1e-9)
            break
        for task in capped:
            remaining -= (pool_size - counts[task]) * problem.costs[task]
            counts[task] = pool_size
            open_tasks.remove(task)
    return counts


def _equal_counts(problem: BudgetProblem, pool_size: int) -> dict[str, int]:
    n = min(pool_size, math.floor(problem.budget / problem.full_labeling_cost + 1e-9))
    return {task: n for task in problem.tasks}


def counts_for(strategy: str, problem: BudgetProblem, pool_size: int) -> dict[str, int]:
    """Labels per task of a counting heuristic (see the module table)."""
    costs = problem.costs
    if strategy in ("uniform_count", "full_labeling", "disjoint"):
        return _equal_counts(problem, pool_size)
    if strategy == "uniform_budget":
        return _counts_from_money_weights(problem, {t: 1.0 for t in problem.tasks}, pool_size)
    if strategy == "cost_proportional":
        return _counts_from_money_weights(problem, {t: costs[t] ** 2 for t in problem.tasks}, pool_size)
    if strategy == "inverse_cost":
        return _counts_from_money_weights(problem, {t: 1.0 / costs[t] for t in problem.tasks}, pool_size)
    if strategy.startswith("single:"):
        task = strategy.split(":", 1)[1]
        problem.cost_of(task)
        return _counts_from_money_weights(problem, {t: float(t == task) for t in problem.tasks}, pool_size)
    raise ConfigError(f"'{strategy}' is not a counting strategy", f"use one of {list(HEURISTICS)}")


def heuristic_labels(strategy: str, problem: BudgetProblem, ids: Sequence[str], seed: int = 0) -> dict[str, list[str]]:
    """Which images get which task's label under a heuristic strategy (seeded)."""
    rng = np.random.default_rng(seed)
    ids = sorted(ids)
    size = len(ids)
    if strategy == "random":
        pairs = [(i, t) for t in range(len(problem.tasks)) for i in range(size)]
        order = rng.permutation(len(pairs))
        labels: dict[str, list[str]] = {task: [] for task in problem.tasks}
        remaining = problem.budget
        cheapest = min(problem.costs.values())
        for index in order:
            if remaining < cheapest:
                break
            image, task_index = pairs[index]
            task = problem.tasks[task_index]
            if problem.costs[task] <= remaining:
                labels[task].append(ids[image])
                remaining -= problem.costs[task]
        return labels
    counts = counts_for(strategy, problem, size)
    if strategy == "full_labeling":
        order = rng.permutation(size)
        return {task: [ids[i] for i in order[:counts[task]]] for task in problem.tasks}
    if strategy == "disjoint":
        order = list(rng.permutation(size))
        labels, start = {}, 0
        for task in problem.tasks:
            chosen = order[start:start + counts[task]]
            if len(chosen) < counts[task]:  # the pool is too small for disjoint sets: reuse images from the front
                used = set(chosen)
                chosen = chosen + [i for i in order if i not in used][:counts[task] - len(chosen)]
            start += counts[task]
            labels[task] = [ids[i] for i in chosen]
        return labels
    return {task: [ids[i] for i in rng.permutation(size)[:counts[task]]] for task in problem.tasks}


def allocate(problem: BudgetProblem, pool, strategy: str = "taba", pilot=None, seed: int = 0,
             progress: bool | None = None, **options) -> Allocation:
    """Allocate `problem`'s budget over the images of `pool` with `strategy`.

    Args:
        problem (`BudgetProblem`): tasks, costs, budget.
        pool (`datasets.Dataset` or sequence of ids): the unlabeled pool (a dense data set: scenes, NYU-v2,
            CityScapes, Taskonomy), or just its ids for the heuristics.
        strategy (`str`, defaults to `"taba"`): one of :data:`STRATEGIES`.
        pilot (`Pilot` or path, *optional*): `taba` only: the pilot (`effhub.budget.pilot`) made for this pool, with
            its labels in `pool`; its estimates are computed (a short training) and cached in its folder when missing.
        seed (`int`, defaults to 0): seeds the random choices (heuristics) and the pilot model.
        progress (`bool`, *optional*): progress bars (default: on a terminal).
        options: `taba` options (see :func:`effhub.budget.taba.taba_labels`).

    Returns:
        `Allocation`: which image gets which task's label; `apply` it to the pool for training.
    """
    ids = problem.check_pool(pool)
    fingerprint = pool_fingerprint(ids)
    if strategy == "taba":
        from .pilot import Pilot, estimate_pilot
        from .taba import taba_labels

        if pilot is None:
            raise ConfigError("strategy 'taba' needs a pilot",
                              "run `effhub budget pilot` (or effhub.budget.plan_pilot), label its images, and pass it")
        if not isinstance(pilot, Pilot):
            pilot = Pilot.load(pilot)
        pilot.check_pool(fingerprint)
        estimate = estimate_pilot(pilot, pool, seed=seed, progress=progress)
        labels, details = taba_labels(problem, ids, pilot, estimate, progress=progress, **options)
        allocation = Allocation(problem, labels, fingerprint, "taba", details)
    else:
        if options:
            raise ConfigError(f"options {sorted(options)} apply to 'taba' only", "drop them for heuristic strategies")
        if strategy not in HEURISTICS and not strategy.startswith("single:"):
            raise ConfigError(f"Unknown allocation strategy '{strategy}'", f"use one of {list(STRATEGIES)}")
        labels = heuristic_labels(strategy, problem, ids, seed)
        allocation = Allocation(problem, labels, fingerprint, strategy, {"seed": seed})
    allocation.check()
    return allocation


__all__ = ["HEURISTICS", "STRATEGIES", "allocate", "counts_for", "heuristic_labels"]
