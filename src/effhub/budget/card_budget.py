"""The dataset card of a budget simulation: the allocation table, the score table and the plot, published as a
dataset repository (a tool has no model to publish).

`write_simulation_card(simulation_dir, output_dir)` reads what `simulate` wrote (`results.json`, `table.md`,
`plot.png`) and writes a publishable folder: `README.md` (a `huggingface_hub.DatasetCard`), `allocations.md` (labels
bought per task by every cell), `table.md`, `plot.png`, `results.json` and `summary.json` (the headline figures). Every
number comes from `results.json`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..atomic import atomic_write_json, atomic_write_text
from ..errors import CheckpointError
from .simulation import PLOT_FILE, REFERENCE, RESULTS_FILE, TABLE_FILE

ALLOCATIONS_FILE = "allocations.md"
SUMMARY_FILE = "summary.json"
CARD_FILE = "README.md"


def allocation_table(results: dict) -> str:
    """Markdown table of every cell: strategy, budget, seed, labels bought per task, money spent, Delta_T (%)."""
    tasks = list(results["recipe"]["tasks"])
    lines = ["| strategy | budget | seed | " + " | ".join(f"{task} labels" for task in tasks)
             + " | spent | Delta_T (%) |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in tasks) + " | ---: | ---: |"]
    for cell in results["cells"]:
        info = cell["cell"]
        budget = "all labels" if info["strategy"] == REFERENCE else f"{info['budget']:g}"
        delta = "0 (reference)" if info["strategy"] == REFERENCE else f"{cell.get('delta_t', float('nan')):+.2f}"
        lines.append(f"| {info['strategy']} | {budget} | {info['seed']} | "
                     + " | ".join(str(cell["counts"].get(task, 0)) for task in tasks)
                     + f" | {cell['spend']:g} | {delta} |")
    return "\n".join(lines)


def simulation_summary(results: dict) -> dict:
    """Headline figures: taba's and the best heuristic's mean Delta_T at the largest budget, and that budget as a
    fraction of what labelling every task of every pool image costs (the reference cell's spend)."""
    strategies = results["summary"]["strategies"]
    largest = max(float(budget) for by_budget in strategies.values() for budget in by_budget)
    key = f"{largest:g}"
    full_cost = next(cell["spend"] for cell in results["cells"] if cell["cell"]["strategy"] == REFERENCE)
    heuristics = {name: by_budget[key]["mean"] for name, by_budget in strategies.items()
                  if name != "taba" and key in by_budget}
    best = max(heuristics, key=heuristics.get) if heuristics else None
    return {"largest_budget": largest, "full_labelling_cost": full_cost, "budget_fraction": largest / full_cost,
            "taba_delta_t": strategies.get("taba", {}).get(key, {}).get("mean"),
            "best_heuristic": best, "best_heuristic_delta_t": heuristics.get(best) if best else None,
            "dataset": results["recipe"]["dataset"], "tasks": list(results["recipe"]["tasks"]),
            "costs": results["recipe"]["costs"], "testbed": results["summary"].get("testbed", {})}


def write_simulation_card(simulation_dir, output_dir, repo_id: str | None = None) -> Path:
    """Write the publishable folder of a finished simulation (see the module docstring); returns its `README.md`.

    Args:
        simulation_dir (`str` or `Path`): the `--output` of `effhub budget simulate` (holds `results.json`).
        output_dir (`str` or `Path`): the folder to write (created; its earlier files of these names are replaced).
        repo_id (`str`, *optional*): the dataset repository it will be published as (shown in the card).
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    from ..citations import bibtex
    from ..registry import get_method

    simulation_dir, output_dir = Path(simulation_dir), Path(output_dir)
    results_path = simulation_dir / RESULTS_FILE
    if not results_path.is_file():
        raise CheckpointError(f"'{simulation_dir}' holds no {RESULTS_FILE}",
                              "run `effhub budget simulate --output <folder>` to the end first")
    results = json.loads(results_path.read_text(encoding="utf-8"))
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in (RESULTS_FILE, TABLE_FILE, PLOT_FILE):
        if (simulation_dir / name).is_file():
            shutil.copyfile(simulation_dir / name, output_dir / name)
    allocations = allocation_table(results)
    atomic_write_text(output_dir / ALLOCATIONS_FILE, allocations + "\n")
    summary = simulation_summary(results)
    atomic_write_json(output_dir / SUMMARY_FILE, summary)
    recipe = results["recipe"]
    checks = "\n".join(f"- {strategy}: rises with budget: {check['rises_with_budget']}, above the constant "
                       f"prediction: {check['above_trivial']}" for strategy, check in summary["testbed"].items())
    plot = f"![Delta_T against budget]({PLOT_FILE})\n\n" if (output_dir / PLOT_FILE).is_file() else ""
    data = DatasetCardData(license="mit", tags=["effhub", "label-budget-allocation", "multi-task-learning"],
                           pretty_name=f"effhub label budget allocation on {recipe['dataset']}")
    content = f"""---
{data.to_yaml()}
---

# {repo_id or "label budget allocation"}

Label budget allocation for multi-task learning (Sun et al., arXiv 2308.12949), simulated by effhub's
`effhub budget simulate` on the {recipe['dataset']} data set: tasks {", ".join(summary['tasks'])} with label costs
{", ".join(f"{task} {cost:g}" for task, cost in summary['costs'].items())}. Each cell buys labels with one strategy at
one budget, trains the same multi-task network ({recipe['model_kind']}, {recipe['train_steps']} steps) on them and is
scored by Delta_T (%) against the network trained on every label of the pool (the reference, same seed).

At the largest budget ({summary['largest_budget']:g}, {summary['budget_fraction']:.1%} of the
{summary['full_labelling_cost']:g} that labelling everything costs), taba reaches Delta_T
{_signed(summary['taba_delta_t'])} and the best heuristic ({summary['best_heuristic']})
{_signed(summary['best_heuristic_delta_t'])}. `taba` is effhub's reconstruction of Task-Adaptive Budget Allocation,
not the authors' code.

## Multi-task score (Delta_T %, mean ± spread over seeds)

{results['table']}

## Labels bought by each cell

{allocations}

## Plot

{plot}## Test-bed check

{checks or "- not run (the grid has no even-spending heuristic at every budget)"}

## Files

`results.json` (every cell, the recipe, the machine), `table.md`, `allocations.md`, `plot.png`, `summary.json` (the
figures above).

## Citation

```bibtex
{bibtex(*get_method("budget").papers)}
```
"""
    card = DatasetCard(content)
    path = output_dir / CARD_FILE
    atomic_write_text(path, str(card))
    return path


def _signed(value) -> str:
    return "n/a" if value is None else f"{value:+.2f}%"


__all__ = ["write_simulation_card", "allocation_table", "simulation_summary", "ALLOCATIONS_FILE", "SUMMARY_FILE"]
