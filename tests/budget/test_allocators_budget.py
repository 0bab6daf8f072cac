"""Heuristic allocators and effhub's taba (on hand-made pilot estimates: no training)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from effhub.budget import HEURISTICS, BudgetProblem, allocate, pool_fingerprint
from effhub.budget.allocators import counts_for
from effhub.budget.pilot import Pilot, PilotEstimate
from effhub.budget.taba import NOTE, taba_labels
from effhub.errors import ConfigError, DatasetError

TASKS = ("segmentation", "depth", "normals")


@pytest.mark.parametrize("strategy", [*HEURISTICS, "single:segmentation"])
def test_heuristics_respect_the_budget_and_are_seeded(strategy):
    ids = [f"img-{i:03d}" for i in range(60)]
    problem = BudgetProblem(TASKS, [10, 1, 3], 300)
    first = allocate(problem, ids, strategy, seed=4)
    assert first.total_spend <= problem.budget
    assert first.total_spend > problem.budget - problem.full_labeling_cost  # little money is left over
    assert allocate(problem, ids, strategy, seed=4).labels == first.labels
    assert allocate(problem, ids, strategy, seed=5).labels != first.labels


def test_counts_follow_their_definitions():
    problem = BudgetProblem(TASKS, [10, 1, 3], 1400)
    assert counts_for("uniform_count", problem, 1000) == {"segmentation": 100, "depth": 100, "normals": 100}
    money = counts_for("uniform_budget", problem, 1000)
    assert money == {"segmentation": 46, "depth": 466, "normals": 155}
    proportional = counts_for("cost_proportional", problem, 1000)
    assert proportional["segmentation"] > proportional["normals"] > proportional["depth"]
    inverse = counts_for("inverse_cost", problem, 1000)
    assert inverse["depth"] > inverse["normals"] > inverse["segmentation"]
    # a task capped at the pool size hands its money on
    capped = counts_for("uniform_budget", BudgetProblem(TASKS, [10, 1, 3], 2600), 200)
    assert capped["depth"] == 200 and capped["normals"] == 200 and capped["segmentation"] == 180


def test_structure_of_full_and_disjoint_labeling():
    ids = [str(i) for i in range(50)]
    problem = BudgetProblem(TASKS, [10, 1, 3], 210)
    full = allocate(problem, ids, "full_labeling")
    assert full.labels["segmentation"] == full.labels["depth"] == full.labels["normals"]
    disjoint = allocate(problem, ids, "disjoint")
    sets = [set(disjoint.labels[t]) for t in TASKS]
    assert not (sets[0] & sets[1]) and not (sets[1] & sets[2]) and not (sets[0] & sets[2])


def test_unknown_strategy_and_taba_without_pilot():
    problem = BudgetProblem(TASKS, [10, 1, 3], 100)
    with pytest.raises(ConfigError, match="Unknown allocation strategy"):
        allocate(problem, ["a", "b"], "greedy-ish")
    with pytest.raises(ConfigError, match="needs a pilot"):
        allocate(problem, ["a", "b"], "taba")
    with pytest.raises(Exception, match="not a task"):
        allocate(problem, ["a", "b"], "single:albedo")


def _pilot_and_estimate(num_images, uncertainty, seed=0, pilot_images=4, redundancy=None, dim=16):
    rng = np.random.default_rng(seed)
    ids = [f"img-{i:05d}" for i in range(num_images)]
    features = rng.normal(size=(num_images, dim)).astype(np.float32)
    pilot = Pilot(pool_fingerprint(ids), TASKS, {"segmentation": 10.0, "depth": 1.0, "normals": 3.0},
                  ids[:pilot_images], seed=seed)
    redundancy = redundancy or np.eye(3).tolist()
    return ids, pilot, PilotEstimate(dict(zip(TASKS, uncertainty)), redundancy, features, ids)


def test_taba_spends_within_budget_and_keeps_the_pilot():
    ids, pilot, estimate = _pilot_and_estimate(200, [1.0, 1.0, 1.0])
    problem = BudgetProblem(TASKS, [10, 1, 3], 500)
    labels, details = taba_labels(problem, ids, pilot, estimate, progress=False)
    spend = sum(len(labels[t]) * problem.costs[t] for t in TASKS)
    assert problem.budget - max(problem.costs.values()) < spend <= problem.budget
    for task in TASKS:
        assert set(pilot.image_ids) <= set(labels[task])
    assert details["note"] == NOTE and "reconstruction" in NOTE
    curve = details["information_curve"]
    assert all(b[1] >= a[1] - 1e-6 for a, b in itertools.pairwise(curve))  # information never falls


def test_taba_follows_the_estimated_uncertainty():
    problem = BudgetProblem(TASKS, [10, 1, 3], 600)
    ids, pilot, learned_depth = _pilot_and_estimate(200, [1.0, 0.05, 1.0])
    _, _, open_depth = _pilot_and_estimate(200, [0.05, 1.0, 1.0])
    depth_learned, _ = taba_labels(problem, ids, pilot, learned_depth, progress=False)
    depth_open, _ = taba_labels(problem, ids, pilot, open_depth, progress=False)
    assert len(depth_open["depth"]) > len(depth_learned["depth"])
    assert len(depth_learned["segmentation"]) > len(depth_open["segmentation"])


def test_redundant_tasks_are_labelled_less():
    problem = BudgetProblem(TASKS, [10, 1, 3], 600)
    ids, pilot, independent = _pilot_and_estimate(200, [1.0, 1.0, 1.0])
    redundant = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.9], [0.0, 0.9, 1.0]]
    _, _, dependent = _pilot_and_estimate(200, [1.0, 1.0, 1.0], redundancy=redundant)
    alone, _ = taba_labels(problem, ids, pilot, independent, progress=False)
    shared, _ = taba_labels(problem, ids, pilot, dependent, progress=False)
    assert len(shared["depth"]) + len(shared["normals"]) < len(alone["depth"]) + len(alone["normals"])


def test_taba_large_pool_uses_a_sparse_similarity():
    ids, pilot, estimate = _pilot_and_estimate(3000, [0.8, 0.5, 0.6])
    problem = BudgetProblem(TASKS, [10, 1, 3], 1500)
    labels, details = taba_labels(problem, ids, pilot, estimate, dense_up_to=1000, neighbours=16, progress=False)
    assert details["neighbours"] == 16 and details["similarity_pairs"] <= 3000 * 16
    assert problem.budget - 10 < sum(len(labels[t]) * problem.costs[t] for t in TASKS)  # no saturation
    assert sum(len(labels[t]) * problem.costs[t] for t in TASKS) <= problem.budget


def test_pilot_for_another_pool_or_problem(small_pool, tmp_path):
    from effhub.budget import plan_pilot
    from effhub.budget.pilot import pilot_settings

    pool, test = small_pool
    every_task = {**pilot_settings(), "labels": "every_task", "min_images": 4}
    pilot = plan_pilot(pool, TASKS, [10, 1, 3], fraction=0.2, budget=300, output=tmp_path / "pilot",
                       settings=every_task)
    assert (tmp_path / "pilot" / "images.txt").read_text().split() == pilot.image_ids
    assert Pilot.load(tmp_path / "pilot").image_ids == pilot.image_ids
    with pytest.raises(DatasetError, match="pilot was planned for pool"):
        allocate(BudgetProblem(TASKS, [10, 1, 3], 300), test, "taba", pilot=tmp_path / "pilot")
    with pytest.raises(ConfigError, match="costs"):
        pilot.check_problem(BudgetProblem(TASKS, [10, 2, 3], 300))
    with pytest.raises(ConfigError, match="more than the budget"):
        pilot.check_problem(BudgetProblem(TASKS, [10, 1, 3], 20))
    with pytest.raises(ConfigError, match="more than the budget"):
        plan_pilot(pool, TASKS, [10, 1, 3], fraction=0.1, budget=30, settings=every_task)
    with pytest.raises(ConfigError, match="fraction"):
        plan_pilot(pool, TASKS, [10, 1, 3], fraction=1.5)


def test_equal_money_pilot_spends_alike_on_every_task_on_separate_images(small_pool, tmp_path):
    from effhub.budget import plan_pilot
    from effhub.budget.pilot import estimate_pilot, pilot_settings
    from effhub.budget.problem import pool_ids

    pool, _ = small_pool
    settings = {**pilot_settings(), "labels": "equal_money", "min_images": 1, "steps": 2, "batch_size": 4}
    # money per task: max(10% of 300 / 3 tasks, 1 label of the costliest task) = 10
    pilot = plan_pilot(pool, TASKS, [10, 1, 3], fraction=0.1, budget=300, output=tmp_path / "pilot",
                       settings=settings)
    assert {task: len(pilot.labels_of(task)) for task in TASKS} == {"segmentation": 1, "depth": 10, "normals": 3}
    assert pilot.spend == 10 + 10 + 9
    sets = [set(pilot.labels_of(task)) for task in TASKS]
    assert sum(map(len, sets)) == len(set().union(*sets)) == len(pilot.image_ids)  # one label per image
    lines = (tmp_path / "pilot" / "images.txt").read_text().splitlines()
    assert sorted(line.split("\t")[1] for line in lines) == ["depth"] * 10 + ["normals"] * 3 + ["segmentation"]
    loaded = Pilot.load(tmp_path / "pilot")
    assert loaded.task_labels == pilot.task_labels and loaded.spend == pilot.spend
    assert loaded.tasks_of(pilot.labels_of("depth")[0]) == ["depth"]

    estimate = estimate_pilot(loaded, pool, progress=False)
    assert set(estimate.uncertainty) == set(TASKS)
    assert all(0.05 <= value <= 1.0 for value in estimate.uncertainty.values())
    # one held-out label of depth's 10 (25%, rounded) is 2 or 3, normals 1, and the lone segmentation label none
    assert estimate.details["heldout_images"] in (3, 4)
    assert settings["uncertainty"] == "gap" and estimate.uncertainty["segmentation"] == 1.0  # nothing held out
    problem = BudgetProblem(TASKS, [10, 1, 3], 120)
    labels, details = taba_labels(problem, pool_ids(pool), loaded, estimate, progress=False)
    for task in TASKS:  # taba starts from the pilot's own labels, not every task on every pilot image
        assert set(pilot.labels_of(task)) <= set(labels[task])
    assert details["pilot_labels"] == {"segmentation": 1, "depth": 10, "normals": 3}
    assert sum(len(labels[task]) * problem.costs[task] for task in TASKS) <= problem.budget


def test_equal_money_pilot_needs_only_its_own_labels(small_pool):
    from effhub.budget import Allocation, plan_pilot
    from effhub.budget.pilot import check_pilot_labels, pilot_settings
    from effhub.budget.problem import pool_ids

    pool, _ = small_pool
    ids = pool_ids(pool)
    settings = {**pilot_settings(), "labels": "equal_money", "min_images": 1}
    pilot = plan_pilot(pool, TASKS, [10, 1, 3], fraction=0.1, budget=300, settings=settings)
    # a pool that carries exactly the pilot's labels
    labelled = Allocation(BudgetProblem(TASKS, [10, 1, 3], pilot.spend), pilot.task_labels, pool_fingerprint(ids),
                          "pilot").apply(pool)
    positions = [ids.index(i) for i in pilot.image_ids]
    check_pilot_labels(pilot, labelled.select(positions))
    every_task = Pilot(pilot.pool_fingerprint, pilot.tasks, pilot.costs, pilot.image_ids)
    with pytest.raises(DatasetError, match="pilot label"):
        check_pilot_labels(every_task, labelled.select(positions))
    with pytest.raises(ConfigError, match="more than the budget"):
        plan_pilot(pool, TASKS, [10, 1, 3], fraction=0.1, budget=20, settings=settings)
    with pytest.raises(ConfigError, match="Unknown pilot layout"):
        plan_pilot(pool, TASKS, [10, 1, 3], budget=300, settings={**settings, "labels": "some"})


def test_gap_uncertainty_is_the_held_out_loss_beyond_the_training_loss(small_pool):
    from effhub.budget import plan_pilot
    from effhub.budget.pilot import estimate_pilot, pilot_settings

    pool, _ = small_pool
    base = {**pilot_settings(), "labels": "equal_money", "min_images": 2, "steps": 20, "batch_size": 4}
    estimates = {}
    for kind in ("heldout", "gap"):
        pilot = plan_pilot(pool, TASKS, [3, 1, 2], fraction=0.5, budget=36, seed=1,  # 2 / 6 / 3 labels
                           settings={**base, "uncertainty": kind})
        estimates[kind] = estimate_pilot(pilot, pool, seed=1, progress=False)
    held, gap = estimates["heldout"], estimates["gap"]
    for task in TASKS:
        losses = gap.details["losses"][task]
        assert losses == held.details["losses"][task]  # the same pilot model: only the estimate differs
        assert losses["train"] < losses["model"] or gap.uncertainty[task] == 0.05
        expected = (losses["model"] - losses["train"]) / losses["constant"]
        assert gap.uncertainty[task] == pytest.approx(min(1.0, max(0.05, expected)))
        assert held.uncertainty[task] == pytest.approx(min(1.0, max(0.05, losses["model"] / losses["constant"])))
        assert gap.uncertainty[task] <= held.uncertainty[task]
