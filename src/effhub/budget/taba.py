"""`taba`: effhub's reconstruction of Task-Adaptive Budget Allocation (Sun et al., "Label Budget Allocation in
Multi-Task Learning", arXiv 2308.12949).

The paper "estimate[s] and then maximize[s] the extent of new information obtained from the allocated budget as a
proxy for multi-task learning performance"; its estimator is not public beyond that sentence. **This is effhub's own
algorithm in that spirit, not the authors' code**:

- the pilot (`effhub.budget.pilot`) gives, per task `t`, the error left to learn `u_t`, the redundancy `R[s, t]`
  between tasks, and trunk features of every pool image;
- image similarity `sim(i, j)` is the cosine of the centred features, clipped to [0, 1] (raised to
  `similarity_power`);
- the information of a set `S` of (image, task) labels is the facility-location function
  `F(S) = sum_t u_t sum_i w_i max_{(j, s) in S} sim(i, j) R[s, t]` over the pool's images `i` (or, for large pools,
  over k-means centres of the features weighted by cluster size `w_i`): monotone and submodular;
- `F` is maximised under the knapsack budget `sum c_t <= B` by lazy greedy twice, once by gain per cost and once by
  gain, keeping the better (the usual guarantee for submodular knapsack); the pilot's labels start `S` and their
  cost is part of `B`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from .problem import BudgetProblem

NOTE = ("taba is effhub's reconstruction of Task-Adaptive Budget Allocation (Sun et al., arXiv 2308.12949): the "
        "paper's estimator is not public, so this is not the authors' algorithm")
BATCH = 32


def _kmeans(points: np.ndarray, clusters: int, seed: int, iterations: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Centres (unit norm) and sizes of a seeded spherical k-means of unit-norm `points`."""
    rng = np.random.default_rng(seed)
    centres = points[rng.choice(len(points), clusters, replace=False)].copy()
    for _ in range(iterations):
        assignment = np.argmax(points @ centres.T, axis=1)
        for k in range(clusters):
            members = points[assignment == k]
            if len(members):
                centre = members.sum(axis=0)
                centres[k] = centre / max(float(np.linalg.norm(centre)), 1e-12)
    assignment = np.argmax(points @ centres.T, axis=1)
    return centres, np.bincount(assignment, minlength=clusters).astype(np.float32)


def similarity_matrix(features: np.ndarray, max_demand_points: int = 1024, power: float = 1.0,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`(sim, weights)`: `sim[k, j]` between demand point `k` and pool image `j` (clipped cosine of the centred
    features, to `power`), and each demand point's weight (the images it stands for)."""
    x = np.asarray(features, dtype=np.float32)
    x = x - x.mean(axis=0, keepdims=True)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if len(x) <= max_demand_points:
        demand, weights = x, np.ones(len(x), dtype=np.float32)
    else:
        demand, weights = _kmeans(x, max_demand_points, seed)
    sim = np.clip(demand @ x.T, 0.0, 1.0)
    if power != 1.0:
        sim = sim ** power
    return sim.astype(np.float32), weights


class _Coverage:
    """The facility-location state: `cover[k, t]`, the best coverage of demand point `k` for task `t`."""

    def __init__(self, sim, weights, uncertainty, redundancy):
        self.sim, self.weights = sim, weights
        self.u, self.r = uncertainty, redundancy
        self.cover = np.zeros((sim.shape[0], len(uncertainty)), dtype=np.float32)

    def value(self) -> float:
        return float((self.cover * self.weights[:, None]).sum(axis=0) @ self.u)

    def gains(self, images: np.ndarray, task: int) -> np.ndarray:
        """Exact gains of adding `(image, task)` for each of `images`."""
        columns = self.sim[:, images]  # (K, m)
        total = np.zeros(len(images), dtype=np.float64)
        for t in range(len(self.u)):
            if self.u[t] <= 0 or self.r[task, t] <= 0:
                continue
            delta = np.maximum(columns * self.r[task, t] - self.cover[:, t:t + 1], 0.0)
            total += self.u[t] * (self.weights @ delta)
        return total

    def add(self, image: int, task: int) -> None:
        column = self.sim[:, image]
        for t in range(len(self.u)):
            np.maximum(self.cover[:, t], column * self.r[task, t], out=self.cover[:, t])


def _greedy(sim, weights, u, r, costs: np.ndarray, budget: float, start: Sequence[tuple[int, int]],
            by_ratio: bool, progress_bar=None):
    """Lazy greedy from the pairs `start`; returns (chosen pairs, value, curve of (spend, value))."""
    state = _Coverage(sim, weights, u, r)
    num_images, num_tasks = sim.shape[1], len(u)
    chosen = np.zeros((num_images, num_tasks), dtype=bool)
    spent = 0.0
    for image, task in start:
        if not chosen[image, task]:
            chosen[image, task] = True
            state.add(image, task)
            spent += costs[task]
    scale = (1.0 / costs) if by_ratio else np.ones_like(costs)
    bound = np.empty((num_images, num_tasks), dtype=np.float64)
    for task in range(num_tasks):
        bound[:, task] = state.gains(np.arange(num_images), task) * scale[task]
    bound[chosen] = -np.inf
    fresh = np.ones(num_images * num_tasks, dtype=bool)
    curve, picks = [(spent, state.value())], []
    flat = bound.reshape(-1)
    while True:
        remaining = budget - spent
        unaffordable = costs > remaining + 1e-9
        if unaffordable.all():
            break
        bound[:, unaffordable] = -np.inf
        fresh_values = np.where(fresh, flat, -np.inf)
        stale_values = np.where(fresh, -np.inf, flat)
        best = int(np.argmax(fresh_values))
        if not fresh_values[best] >= stale_values.max():
            # the best upper bound is stale: recompute the stale leaders' exact gains (they only shrink)
            top = np.argpartition(-stale_values, min(BATCH, flat.size - 1))[:BATCH]
            top = top[np.isfinite(stale_values[top])]
            for task in range(num_tasks):
                images = top[top % num_tasks == task] // num_tasks
                if len(images):
                    bound[images, task] = state.gains(images, task) * scale[task]
            fresh[top] = True
            continue
        if not np.isfinite(fresh_values[best]) or fresh_values[best] <= 0:
            break
        image, task = divmod(best, num_tasks)
        chosen[image, task] = True
        bound[image, task] = -np.inf
        state.add(image, task)
        spent += costs[task]
        fresh[:] = False
        picks.append((image, task))
        curve.append((spent, state.value()))
        if progress_bar is not None:
            progress_bar.update(costs[task])
    return chosen, state.value(), curve, picks


def taba_labels(problem: BudgetProblem, ids: Sequence[str], pilot, estimate, max_demand_points: int = 1024,
                similarity_power: float = 1.0, min_uncertainty: float = 0.05, progress: bool | None = None):
    """`(labels, details)` of `taba` for `problem` on the pool `ids`, from a pilot and its estimate.

    Args:
        problem (`BudgetProblem`): tasks, costs, budget (the pilot's labels are paid from it).
        ids (`Sequence[str]`): the pool's ids.
        pilot (`Pilot`), estimate (`PilotEstimate`): see `effhub.budget.pilot`.
        max_demand_points (`int`): pools larger than this are summarised by k-means centres of the features.
        similarity_power (`float`): `sim ** power`; higher makes images less redundant.
        min_uncertainty (`float`): floor of each task's `u_t`.
        progress (`bool`, *optional*): a progress bar over the budget.
    """
    import sys

    from tqdm.auto import tqdm

    pilot.check_problem(problem)
    if similarity_power <= 0:
        raise ConfigError(f"similarity_power={similarity_power} is not positive", "pass e.g. 1.0")
    if max_demand_points < 1:
        raise ConfigError(f"max_demand_points={max_demand_points} is below 1", "pass e.g. 1024")
    start_time = time.perf_counter()
    order = {identifier: index for index, identifier in enumerate(estimate.ids)}
    missing = [i for i in ids if i not in order]
    if missing:
        raise ConfigError(f"The pilot estimate lacks {len(missing)} pool image(s)", "estimate the pilot on this pool")
    features = np.asarray(estimate.features)[[order[i] for i in ids]]
    tasks = list(problem.tasks)
    u = np.array([max(min_uncertainty, float(estimate.uncertainty[t])) for t in tasks], dtype=np.float64)
    pilot_tasks = list(pilot.tasks)
    r = np.array([[estimate.redundancy[pilot_tasks.index(s)][pilot_tasks.index(t)] for t in tasks] for s in tasks],
                 dtype=np.float32)
    sim, weights = similarity_matrix(features, max_demand_points, similarity_power, seed=pilot.seed)
    costs = np.array([problem.costs[t] for t in tasks], dtype=np.float64)
    position = {identifier: index for index, identifier in enumerate(ids)}
    start = [(position[i], t) for i in pilot.image_ids for t in range(len(tasks))]
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    results = {}
    for by_ratio in (True, False):
        with tqdm(total=problem.budget, desc=f"taba ({'gain/cost' if by_ratio else 'gain'})", disable=disable,
                  unit="$") as bar:
            results[by_ratio] = _greedy(sim, weights, u, r, costs, problem.budget, start, by_ratio, bar)
    variant = max(results, key=lambda key: results[key][1])
    chosen, value, curve, _ = results[variant]
    labels = {task: [ids[i] for i in np.flatnonzero(chosen[:, t])] for t, task in enumerate(tasks)}
    step = max(1, len(curve) // 50)
    details = {
        "note": NOTE, "uncertainty": dict(zip(tasks, u.tolist())), "redundancy": r.tolist(),
        "pilot_images": list(pilot.image_ids), "pilot_spend": pilot.spend, "variant": "gain/cost" if variant else "gain",
        "information": value, "information_other_variant": results[not variant][1],
        "information_curve": [[float(s), float(v)] for s, v in curve[::step] + curve[-1:]],
        "demand_points": int(sim.shape[0]), "similarity_power": similarity_power,
        "seconds": time.perf_counter() - start_time, "pilot_estimate": dict(estimate.details),
    }
    return labels, details


__all__ = ["NOTE", "similarity_matrix", "taba_labels"]
