"""Small generated pools for the budget allocation tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_pool():
    """24 train scenes and 8 test scenes of 32x32 (generated once per session)."""
    from effhub.data.dense.scenes import SceneConfig, load_scenes

    config = SceneConfig(height=32, width=32, num_train=24, num_test=8, seed=3)
    return load_scenes(config, "train"), load_scenes(config, "test")


@pytest.fixture
def problem():
    from effhub.budget import BudgetProblem

    return BudgetProblem(tasks=["segmentation", "depth", "normals"], costs=[10, 1, 3], budget=120)
