"""BudgetProblem, Allocation (JSON, label masks on a Dataset) and their bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from effhub.budget import Allocation, BudgetProblem, allocate, pool_fingerprint
from effhub.errors import ConfigError, DatasetError, TaskError


def test_problem_checks_and_costs():
    problem = BudgetProblem(tasks=("segmentation", "depth"), costs={"segmentation": 10, "depth": 1}, budget=50)
    assert problem.costs == {"segmentation": 10.0, "depth": 1.0} and problem.full_labeling_cost == 11.0
    assert BudgetProblem.from_dict(problem.to_dict()) == problem


def test_budget_below_cheapest_label():
    with pytest.raises(ConfigError, match="below the cheapest label"):
        BudgetProblem(tasks=["segmentation", "depth"], costs=[10, 2], budget=1.5)


@pytest.mark.parametrize("costs", [[10, 0], [10, -1], [10, float("nan")], [10, "abc"]])
def test_non_positive_or_bad_costs(costs):
    with pytest.raises(ConfigError):
        BudgetProblem(tasks=["segmentation", "depth"], costs=costs, budget=100)


def test_wrong_number_of_costs_and_repeated_tasks():
    with pytest.raises(ConfigError, match="one cost per task"):
        BudgetProblem(tasks=["segmentation", "depth"], costs=[10], budget=100)
    with pytest.raises(TaskError, match="repeat"):
        BudgetProblem(tasks=["depth", "depth"], costs=[1, 1], budget=100)


def test_unknown_task_names(small_pool):
    pool, _ = small_pool
    problem = BudgetProblem(tasks=["segmentation", "albedo"], costs=[10, 1], budget=100)
    with pytest.raises(TaskError, match="albedo"):
        allocate(problem, pool, "uniform_count")
    with pytest.raises(TaskError, match="costs are given"):
        BudgetProblem(tasks=["segmentation"], costs={"segmentation": 1, "albedo": 2}, budget=100)


def test_json_round_trip_and_apply(small_pool, problem, tmp_path):
    pool, _ = small_pool
    allocation = allocate(problem, pool, "uniform_budget", seed=1)
    path = allocation.save(tmp_path / "allocation.json")
    loaded = Allocation.load(path)
    assert loaded.labels == allocation.labels and loaded.problem == problem
    assert loaded.spend == allocation.spend and loaded.total_spend <= problem.budget
    labelled = loaded.apply(pool)
    assert len(labelled) == len(pool) and labelled.format["type"] == "numpy"
    for row in labelled:
        for task in problem.tasks:
            assert row["label_mask"][task] == (row["id"] in set(allocation.labels[task]))
    assert isinstance(labelled[0]["image"], np.ndarray)
    dropped = loaded.apply(pool, drop_unlabeled=True)
    assert sorted(dropped.with_format(None)["id"]) == allocation.labeled_images


def test_apply_feeds_the_masked_losses(small_pool, problem):
    """The collator turns the applied masks into the label_mask the multi-task losses read."""
    from effhub.budget.training_budget import make_collator

    pool, _ = small_pool
    allocation = allocate(problem, pool, "disjoint", seed=0)
    labelled = allocation.apply(pool, drop_unlabeled=True)
    batch = make_collator(problem.tasks)([labelled[i] for i in range(len(labelled))])
    for column, task in enumerate(problem.tasks):
        expected = [i in set(allocation.labels[task]) for i in batch["ids"]]
        assert batch["label_mask"][:, column].tolist() == expected
    assert (batch["label_mask"].sum(dim=1) == 1).all()  # disjoint: one task per image


def test_allocation_for_another_pool(small_pool, problem):
    pool, test = small_pool
    allocation = allocate(problem, pool, "uniform_count")
    with pytest.raises(DatasetError, match="allocated on"):
        allocation.apply(test)


def test_corrupt_or_foreign_json(tmp_path):
    with pytest.raises(ConfigError, match="not valid JSON"):
        Allocation.from_json("{nope")
    with pytest.raises(ConfigError, match="not an effhub label allocation"):
        Allocation.from_json('{"labels": {}}')
    with pytest.raises(ConfigError, match="does not exist"):
        Allocation.load(tmp_path / "missing.json")


def test_over_budget_allocation_is_refused():
    problem = BudgetProblem(tasks=["depth"], costs=[1], budget=2)
    allocation = Allocation(problem, {"depth": ["a", "b", "c"]}, pool_fingerprint(["a", "b", "c"]), "manual")
    with pytest.raises(ConfigError, match="over its budget"):
        Allocation.from_dict(allocation.to_dict())


def test_apply_to_a_lazily_decoded_reader(tmp_path):
    """On a real-format reader (NYU-v2 layout), the pairs not bought decode as missing labels."""
    from effhub.data import load_dataset
    from tests.data.conftest import write_nyuv2

    write_nyuv2(tmp_path / "nyu")
    pool = load_dataset("nyuv2", "train", root=tmp_path / "nyu", kind="dense")
    ids = [str(i) for i in pool.with_format(None)["id"]]
    problem = BudgetProblem(tasks=["segmentation", "depth"], costs=[10, 1], budget=11)
    allocation = Allocation(problem, {"segmentation": ids[:1], "depth": ids[1:]}, pool_fingerprint(ids), "manual")
    labelled = allocation.apply(pool)
    first, second = labelled[0], labelled[1]
    assert first["label_mask"]["segmentation"] and not first["label_mask"]["depth"] and first["depth"] is None
    assert second["label_mask"]["depth"] and not second["label_mask"]["segmentation"]
    assert second["segmentation"] is None and np.asarray(second["depth"]).ndim == 2
    assert first["label_mask"]["normals"]  # a task outside the problem keeps its labels
