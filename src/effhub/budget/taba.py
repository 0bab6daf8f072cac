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
  `F(S) = sum_t u_t sum_i max_{(j, s) in S} sim(i, j) R[s, t]` over the pool's images `i` (for large pools each
  image keeps only its `neighbours` most similar images: a sparse similarity): monotone and submodular;
- `F` is maximised under the knapsack budget `sum c_t <= B` by lazy greedy twice, once by gain per cost and once by
  gain, keeping the better (the usual guarantee for submodular knapsack); the pilot's labels start `S` and their
  cost is part of `B` (with an `equal_money` pilot, that start is itself an equal split of money over the tasks).
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


def similarity_columns(features: np.ndarray, neighbours: int | None = None, power: float = 1.0,
                       chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image similarity as sparse columns `(indptr, rows, values)`: column `j` lists the images `i` whose
    `neighbours` most similar images include `j`, with `sim(i, j)` (clipped cosine of the centred features, to
    `power`). `neighbours=None` keeps every pair (exact, `N^2` values)."""
    x = np.asarray(features, dtype=np.float32)
    x = x - x.mean(axis=0, keepdims=True)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    count = len(x)
    k = count if neighbours is None else min(count, int(neighbours))
    rows, cols, values = [], [], []
    for begin in range(0, count, chunk):
        block = np.clip(x[begin:begin + chunk] @ x.T, 0.0, 1.0)
        block[np.arange(len(block)), np.arange(begin, begin + len(block))] = 1.0  # an image covers itself
        if k < count:
            top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(count), block.shape)
        picked = np.take_along_axis(block, top, axis=1)
        keep = picked > 0
        rows.append(np.repeat(np.arange(begin, begin + len(block)), keep.sum(axis=1)))
        cols.append(top[keep])
        values.append(picked[keep])
    rows, cols, values = np.concatenate(rows), np.concatenate(cols), np.concatenate(values).astype(np.float32)
    if power != 1.0:
        values = values ** power
    order = np.argsort(cols, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=count))])
    return indptr, rows[order], values[order]


class _Coverage:
    """The facility-location state: `cover[i, t]`, the best coverage of image `i` for task `t` by the labels so far."""

    def __init__(self, columns, uncertainty, redundancy):
        self.indptr, self.rows, self.values = columns
        self.u, self.r = uncertainty, redundancy
        self.cover = np.zeros((len(self.indptr) - 1, len(uncertainty)), dtype=np.float32)
        self.column_of = np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr))

    def value(self) -> float:
        return float(self.cover.sum(axis=0) @ self.u)

    def gains(self, images: np.ndarray | None, task: int) -> np.ndarray:
        """Exact gains of adding `(image, task)` for each of `images` (every image when None)."""
        if images is None:
            positions, segment, size = slice(None), self.column_of, len(self.indptr) - 1
        else:
            starts = self.indptr[images]
            lengths = self.indptr[images + 1] - starts
            ends = np.cumsum(lengths)
            positions = np.arange(ends[-1] if len(ends) else 0) + np.repeat(starts - (ends - lengths), lengths)
            segment, size = np.repeat(np.arange(len(images)), lengths), len(images)
        rows, values = self.rows[positions], self.values[positions]
        total = np.zeros(size, dtype=np.float64)
        for t in range(len(self.u)):
            if self.u[t] <= 0 or self.r[task, t] <= 0:
                continue
            delta = np.maximum(values * self.r[task, t] - self.cover[rows, t], 0.0)
            total += self.u[t] * np.bincount(segment, weights=delta, minlength=size)
        return total

    def add(self, image: int, task: int) -> None:
        begin, end = self.indptr[image], self.indptr[image + 1]
        rows, values = self.rows[begin:end], self.values[begin:end]
        for t in range(len(self.u)):
            self.cover[rows, t] = np.maximum(self.cover[rows, t], values * self.r[task, t])


def _greedy(columns, u, r, costs: np.ndarray, budget: float, start: Sequence[tuple[int, int]],
            by_ratio: bool, progress_bar=None):
    """Lazy greedy from the pairs `start`; returns (chosen pairs, value, curve of (spend, value), picks).

    A max-heap holds every candidate pair's last computed gain (per cost when `by_ratio`), an upper bound of its
    current gain (submodularity). The top is taken when its gain was computed after the last pick; otherwise the
    `BATCH` leading candidates are recomputed together and pushed back."""
    import heapq

    state = _Coverage(columns, u, r)
    num_images, num_tasks = len(columns[0]) - 1, len(u)
    chosen = np.zeros((num_images, num_tasks), dtype=bool)
    spent = 0.0
    for image, task in start:
        if not chosen[image, task]:
            chosen[image, task] = True
            state.add(image, task)
            spent += costs[task]
    scale = (1.0 / costs) if by_ratio else np.ones_like(costs)
    heap = []
    for task in range(num_tasks):
        values = state.gains(None, task) * scale[task]
        heap.extend((-float(v), image * num_tasks + task) for image, v in enumerate(values)
                    if v > 0 and not chosen[image, task])
    heapq.heapify(heap)
    computed_at = np.zeros(num_images * num_tasks, dtype=np.int64)  # the pick count when a gain was computed
    curve, picks = [(spent, state.value())], []
    while heap:
        remaining = budget - spent
        _, index = heap[0]
        task = index % num_tasks
        if costs[task] > remaining + 1e-9:  # the budget only shrinks: never affordable again
            heapq.heappop(heap)
            continue
        if computed_at[index] == len(picks):
            heapq.heappop(heap)
            image = index // num_tasks
            chosen[image, task] = True
            state.add(image, task)
            spent += costs[task]
            picks.append((image, task))
            curve.append((spent, state.value()))
            if progress_bar is not None:
                progress_bar.update(costs[task])
            continue
        batch = []
        while heap and len(batch) < BATCH:
            _, index = heapq.heappop(heap)
            if costs[index % num_tasks] <= remaining + 1e-9:
                batch.append(index)
        batch = np.asarray(batch, dtype=np.int64)
        for task in range(num_tasks):
            members = batch[batch % num_tasks == task]
            if not len(members):
                continue
            values = state.gains(members // num_tasks, task) * scale[task]
            computed_at[members] = len(picks)
            for index, value in zip(members.tolist(), values.tolist()):
                if value > 0:
                    heapq.heappush(heap, (-value, index))
    return chosen, state.value(), curve, picks


def taba_labels(problem: BudgetProblem, ids: Sequence[str], pilot, estimate, dense_up_to: int = 2048,
                neighbours: int = 64,
                similarity_power: float = 1.0, min_uncertainty: float = 0.05, progress: bool | None = None):
    """`(labels, details)` of `taba` for `problem` on the pool `ids`, from a pilot and its estimate.

    Args:
        problem (`BudgetProblem`): tasks, costs, budget (the pilot's labels are paid from it).
        ids (`Sequence[str]`): the pool's ids.
        pilot (`Pilot`), estimate (`PilotEstimate`): see `effhub.budget.pilot`.
        dense_up_to (`int`): pools up to this size use every image pair's similarity (exact).
        neighbours (`int`): larger pools keep, per image, its `neighbours` most similar images (sparse).
        similarity_power (`float`): `sim ** power`; higher makes images less redundant.
        min_uncertainty (`float`): floor of each task's `u_t`.
        progress (`bool`, *optional*): a progress bar over the budget.
    """
    import sys

    from tqdm.auto import tqdm

    pilot.check_problem(problem)
    if similarity_power <= 0:
        raise ConfigError(f"similarity_power={similarity_power} is not positive", "pass e.g. 1.0")
    if neighbours < 1:
        raise ConfigError(f"neighbours={neighbours} is below 1", "pass e.g. 64")
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
    columns = similarity_columns(features, None if len(ids) <= dense_up_to else neighbours, similarity_power)
    costs = np.array([problem.costs[t] for t in tasks], dtype=np.float64)
    position = {identifier: index for index, identifier in enumerate(ids)}
    start = [(position[i], t) for t, task in enumerate(tasks) for i in pilot.labels_of(task)]
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    results = {}
    for by_ratio in (True, False):
        with tqdm(total=problem.budget, desc=f"taba ({'gain/cost' if by_ratio else 'gain'})", disable=disable,
                  unit="$") as bar:
            results[by_ratio] = _greedy(columns, u, r, costs, problem.budget, start, by_ratio, bar)
    variant = max(results, key=lambda key: results[key][1])
    chosen, value, curve, _ = results[variant]
    labels = {task: [ids[i] for i in np.flatnonzero(chosen[:, t])] for t, task in enumerate(tasks)}
    step = max(1, len(curve) // 50)
    details = {
        "note": NOTE, "uncertainty": dict(zip(tasks, u.tolist())), "redundancy": r.tolist(),
        "pilot_images": list(pilot.image_ids), "pilot_labels": {task: len(pilot.labels_of(task)) for task in tasks},
        "pilot_spend": pilot.spend, "variant": "gain/cost" if variant else "gain",
        "information": value, "information_other_variant": results[not variant][1],
        "information_curve": [[float(s), float(v)] for s, v in curve[::step] + curve[-1:]],
        "similarity_pairs": len(columns[1]), "neighbours": None if len(ids) <= dense_up_to else neighbours,
        "similarity_power": similarity_power,
        "seconds": time.perf_counter() - start_time, "pilot_estimate": dict(estimate.details),
    }
    return labels, details


__all__ = ["NOTE", "similarity_columns", "taba_labels"]
