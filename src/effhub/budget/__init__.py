"""Label budget allocation for multi-task learning (Sun et al., "Label Budget Allocation in Multi-Task Learning",
arXiv 2308.12949): a tool, not a model.

Given tasks whose labels cost different amounts and a budget, decide which image of an unlabeled pool gets which
task's label; train a multi-task model on the partially labelled pool (label-masked losses); compare allocators by
simulation. `taba` is effhub's reconstruction of the paper's Task-Adaptive Budget Allocation (the paper's estimator is
not public); the heuristic strategies it is compared with are in `effhub.budget.allocators`.

```python
from effhub.budget import BudgetProblem, allocate, plan_pilot
pilot = plan_pilot(pool, tasks, costs, budget=2000, output="pilot/")   # label these images (half the budget)
allocation = allocate(BudgetProblem(tasks=tasks, costs=costs, budget=2000), pool=pool, strategy="taba", pilot=pilot)
labeled = allocation.apply(pool)          # label-mask columns used by the multi-task losses
```

Importing this package registers the tool (`effhub budget pilot|allocate|simulate`, `effhub demo budget`); the names
below are imported on first use.
"""

from __future__ import annotations

from ..lazy import lazy_attributes
from ..registry import MethodEntry, register_method

_LAZY = {
    "BudgetProblem": "problem",
    "Allocation": "problem",
    "pool_fingerprint": "problem",
    "allocate": "allocators",
    "STRATEGIES": "allocators",
    "HEURISTICS": "allocators",
    "Pilot": "pilot",
    "PilotEstimate": "pilot",
    "plan_pilot": "pilot",
    "estimate_pilot": "pilot",
    "BudgetRecipe": "recipe_budget",
    "simulate": "simulation",
    "SimulationResult": "simulation",
}

register_method(
    MethodEntry(
        name="budget",
        kind="tool",
        description="label budget allocation for multi-task learning: pilot, allocators (taba + heuristics), "
                    "simulation",
        recipe_class="effhub.budget.recipe_budget:BudgetRecipe",
        demo="effhub.budget.simulation:run_demo",
        papers=("sun2023labelbudget",),
    )
)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
