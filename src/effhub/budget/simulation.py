"""Simulation: train the same multi-task network under each allocation and compare the multi-task scores.

A recipe's grid is strategies x budgets x seeds. Every cell allocates its budget on the pool (with the cell's seed),
keeps only the bought labels (`Allocation.apply`), trains the recipe's network (hard sharing by default) for the same
number of steps from the same seeded initial weights, and scores it on the test split. Per seed one more cell, the
*reference*, trains on every label of the pool: the multi-task score of a cell is Delta_T (%) against the reference
of its seed (`effhub.multitask.delta_t`, the full metric set), so 0 means "as good as labelling everything". The
constant prediction (majority class, mean depth, mean normal) is scored the same way: the floor a cell must beat.

Each cell is its own folder under `<output>/cells/` (allocation, pilot, run) and is done when its `result.json`
exists: an interrupted simulation resumes at the next unfinished cell. Cells run in parallel processes (one CPU
thread each) where cores allow. The end writes `results.json`, `table.md` and `plot.png` (score against budget per
strategy) into `<output>`.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_json, atomic_write_text
from ..errors import ConfigError, DistributedError, TrainingInterrupted
from .problem import BudgetProblem

SIMULATION_FILE = "simulation.json"
RESULT_FILE = "result.json"
RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
PLOT_FILE = "plot.png"
REFERENCE = "reference"


@dataclass(frozen=True)
class Cell:
    """One training of the grid: a strategy at a budget with a seed (the reference has no budget)."""

    strategy: str
    budget: float | None
    seed: int

    @property
    def name(self) -> str:
        if self.strategy == REFERENCE:
            return f"{REFERENCE}-s{self.seed}"
        return f"{self.strategy.replace(':', '-')}-b{self.budget:g}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "budget": self.budget, "seed": self.seed, "name": self.name}


def grid(recipe) -> list[Cell]:
    """The cells of a recipe: per seed the reference, then every budget x strategy."""
    cells = []
    for seed in recipe.seeds:
        cells.append(Cell(REFERENCE, None, int(seed)))
        for budget in recipe.budgets:
            for strategy in recipe.strategies:
                cells.append(Cell(strategy, float(budget), int(seed)))
    return cells


def check_recipe(recipe) -> None:
    """Refuse a grid that cannot run (unknown strategies, bad costs or budgets) before anything is trained."""
    from .allocators import HEURISTICS, STRATEGIES

    if not recipe.budgets or not recipe.strategies or not recipe.seeds:
        raise ConfigError("the simulation grid is empty (budgets, strategies or seeds)",
                          "give at least one budget, strategy and seed")
    for budget in recipe.budgets:
        BudgetProblem(tasks=recipe.tasks, costs=recipe.costs, budget=budget)
    for strategy in recipe.strategies:
        if strategy != "taba" and strategy not in HEURISTICS and not (
                strategy.startswith("single:") and strategy.split(":", 1)[1] in recipe.tasks):
            raise ConfigError(f"Unknown allocation strategy '{strategy}'", f"use one of {list(STRATEGIES)}")
    if len(set(recipe.seeds)) != len(recipe.seeds) or len(set(recipe.budgets)) != len(recipe.budgets):
        raise ConfigError("the grid repeats a seed or a budget", "list every seed and budget once")
    if "taba" in recipe.strategies:
        from .pilot import least_pilot_cost

        pilot_cost = least_pilot_cost([float(c) for c in recipe.costs.values()], recipe.pilot.labels,
                                      recipe.pilot.min_images)
        what = (f"{recipe.pilot.min_images} label(s) of the costliest task and as much money on each other task"
                if recipe.pilot.labels == "equal_money" else f"{recipe.pilot.min_images} images labelled for every task")
        too_small = [b for b in recipe.budgets if b < pilot_cost]
        if too_small:
            raise ConfigError(f"taba's pilot ({what}) costs {pilot_cost:g}, more than the budget(s) {too_small}",
                              "raise those budgets, lower pilot.min_images, or leave taba out of the grid")
    if recipe.train_steps < 1:
        raise ConfigError(f"train_steps={recipe.train_steps}", "train every cell for at least 1 step")


def load_data(recipe, data_dir=None):
    """(pool, test) data sets of the recipe."""
    from ..data import load_dataset

    options = dict(recipe.dataset_options)
    pool = load_dataset(recipe.dataset, recipe.pool_split, root=data_dir, kind="dense", **options)
    test = load_dataset(recipe.dataset, recipe.test_split, root=data_dir, kind="dense", **options)
    if recipe.pool_size:
        pool = pool.select(range(min(recipe.pool_size, len(pool))))
    if recipe.test_size:
        test = test.select(range(min(recipe.test_size, len(test))))
    return pool, test


def _cell_allocation(recipe, cell: Cell, pool, cell_dir: Path, progress: bool):
    from .allocators import allocate
    from .pilot import pilot_settings, plan_pilot
    from .problem import Allocation, pool_fingerprint, pool_ids

    if cell.strategy == REFERENCE:
        ids = pool_ids(pool)
        problem = BudgetProblem(recipe.tasks, recipe.costs, budget=len(ids) * sum(recipe.costs.values()))
        return Allocation(problem, {task: ids for task in recipe.tasks}, pool_fingerprint(ids), REFERENCE)
    problem = BudgetProblem(recipe.tasks, recipe.costs, cell.budget)
    if cell.strategy != "taba":
        return allocate(problem, pool, cell.strategy, seed=cell.seed)
    pilot = plan_pilot(pool, recipe.tasks, recipe.costs, fraction=recipe.pilot.fraction, budget=cell.budget,
                       seed=cell.seed, output=cell_dir / "pilot", settings=pilot_settings(recipe))
    taba = recipe.taba
    return allocate(problem, pool, "taba", pilot=pilot, seed=cell.seed, progress=progress,
                    dense_up_to=taba.dense_up_to, neighbours=taba.neighbours, similarity_power=taba.similarity_power,
                    min_uncertainty=taba.min_uncertainty)


def run_cell(recipe, cell: Cell, output_dir: str | os.PathLike, data_dir=None, progress: bool = False,
             data=None) -> dict:
    """Allocate, train and score one cell; writes `<output>/cells/<cell>/result.json` and returns it."""
    from ..training import Run, RunOptions
    from .training_budget import (
        build_model,
        class_weights_of,
        evaluate_scores,
        make_collator,
        task_channels,
        training_phase,
        trivial_scores,
    )

    start = time.perf_counter()
    cell_dir = Path(output_dir) / "cells" / cell.name
    cell_dir.mkdir(parents=True, exist_ok=True)
    pool, test = data if data is not None else load_data(recipe, data_dir)
    allocation = _cell_allocation(recipe, cell, pool, cell_dir, progress)
    allocation.save(cell_dir / "allocation.json")
    allocated = time.perf_counter()
    labelled = allocation.apply(pool, drop_unlabeled=True)
    channels = task_channels(pool, recipe.tasks, recipe.model.tasks.get("segmentation"))
    weights = class_weights_of(labelled, recipe.tasks, channels.get("segmentation", 0), recipe.class_weight_power) \
        if "segmentation" in channels else None
    model = build_model(recipe.model, channels, cell.seed, recipe.task_loss_weights, weights)
    options = RunOptions(output_dir=cell_dir / "run", seed=cell.seed, overwrite=True, progress=progress)
    from ..recipes import recipe_to_dict

    with Run(options, method="budget", seed=cell.seed, recipe={"simulation": recipe_to_dict(recipe),
                                                               "cell": cell.to_dict()}) as run:
        if recipe.model_kind == "adashare":
            scores = train_adashare_cell(run, recipe, cell.seed, model, labelled, test)
        else:
            phase = training_phase(model, recipe.train_steps, recipe.batch_size, recipe.lr, recipe.weight_decay)
            stage = run.train_stage("train", model, [phase], {"train": labelled},
                                    collate_fn=make_collator(recipe.tasks),
                                    outputs=lambda trained: {"test": evaluate_scores(run, trained, test,
                                                                                     recipe.eval_batch_size)},
                                    phase_end_checkpoints=False)
            scores = stage.outputs["test"]
    result = {"cell": cell.to_dict(), "scores": scores, "counts": allocation.counts,
              "spend": allocation.total_spend, "labelled_images": len(labelled),
              "allocation_seconds": allocated - start, "seconds": time.perf_counter() - start}
    if allocation.strategy == "taba":
        result["taba"] = {key: allocation.details[key] for key in ("uncertainty", "redundancy", "variant", "note")}
    if cell.strategy == REFERENCE:
        result["trivial"] = trivial_scores(pool, test, channels, recipe.eval_batch_size)
    atomic_write_json(cell_dir / RESULT_FILE, result)
    return result


def train_adashare_cell(run, recipe, seed: int, model, labelled, test) -> dict:
    """Train AdaShare on a cell's labelled images; returns the test scores of the re-trained architecture.

    The schedule is the AdaShare recipe `recipe.adashare_recipe` with `recipe.adashare_overrides` (warm-up, policy learning on the labelled images
    halved into `train1` / `train2`, re-training of the most likely architecture from the initial weights), with the
    cell's network, batch size and task loss weights. Every loss is label-masked, so an image trains only the tasks
    the allocation labelled on it. No validation split is carved out: the most likely architecture is kept.
    """
    import dataclasses

    from ..models.adashare.training_adashare import (
        build_policy_phases, split_ids, train_fixed_architecture,
    )
    from ..recipes import load_recipe
    from .training_budget import make_collator

    schedule = dataclasses.replace(load_recipe("adashare", recipe.adashare_recipe, recipe.adashare_overrides),
                                   batch_size=recipe.batch_size,
                                   eval_batch_size=recipe.eval_batch_size, architecture="argmax",
                                   single_task_references=False)
    initial_state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    train1, train2, _ = split_ids(labelled, 0.0, seed).select(labelled)
    train_all = labelled  # train1 and train2 together: no validation split is carved out
    collate = make_collator(recipe.tasks)
    policy_stage = run.train_stage("policy", model, build_policy_phases(schedule, model, len(train1), len(train2)),
                                   {"train": train_all, "train1": train1, "train2": train2}, collate_fn=collate,
                                   initial_state={"temperature": schedule.gumbel_tau_init, "policy_epoch": 0},
                                   phase_end_checkpoints=False)
    learned = policy_stage.model
    logits = {task: value.detach().cpu().tolist() for task, value in learned.policy.items()}
    result = train_fixed_architecture(run, schedule, seed, "retrain", learned.config, learned.argmax_policy(),
                                      initial_state, {"train": train_all}, test, (collate, collate),
                                      policy_logits=logits)
    return result.outputs["test"]


def _cell_job(recipe_dict: dict, cell: dict, output_dir: str, data_dir, threads: int) -> dict:
    """Run one cell in a worker process (one or a few CPU threads)."""
    import torch

    from ..recipes import build_dataclass
    from .recipe_budget import BudgetRecipe

    torch.set_num_threads(max(1, threads))
    recipe = build_dataclass(BudgetRecipe, recipe_dict)
    return run_cell(recipe, Cell(cell["strategy"], cell["budget"], cell["seed"]), output_dir, data_dir)


def _read_result(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclass
class SimulationResult:
    """What a simulation measured.

    Attributes:
        output_dir (`Path`): where it wrote.
        cells (`list[dict]`): every cell's result with its `delta_t` (against the reference of its seed).
        summary (`dict`): per strategy and budget, the mean, spread and values of Delta_T over seeds; the constant
            prediction's Delta_T; the test-bed check.
        table (`str`): the Markdown table.
    """

    output_dir: Path
    cells: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    table: str = ""


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def summarise(recipe, results: list[dict]) -> dict:
    """Delta_T of every cell against its seed's reference, per strategy and budget over seeds, and the checks."""
    from ..multitask import delta_t

    types = {task: ("regression" if task in ("keypoints", "edges") else task) for task in recipe.tasks}
    references = {r["cell"]["seed"]: r for r in results if r["cell"]["strategy"] == REFERENCE}
    trivial = {seed: delta_t(types, ref["trivial"], ref["scores"])["delta_t"] for seed, ref in references.items()}
    grid_values: dict[str, dict[str, list[float]]] = {}
    for result in results:
        cell = result["cell"]
        if cell["strategy"] == REFERENCE:
            continue
        score = delta_t(types, result["scores"], references[cell["seed"]]["scores"])
        result["delta_t"], result["delta_t_per_task"] = score["delta_t"], score["per_task"]
        grid_values.setdefault(cell["strategy"], {}).setdefault(f"{cell['budget']:g}", []).append(score["delta_t"])
    summary = {"strategies": {s: {b: _stats(v) for b, v in by_budget.items()} for s, by_budget in grid_values.items()},
               "trivial": _stats(list(trivial.values())) if trivial else None}
    summary["testbed"] = testbed_check(recipe, summary)
    return summary


def testbed_check(recipe, summary: dict) -> dict:
    """Does the score of each heuristic that spends evenly rise with the budget, above the constant prediction?"""
    checks = {}
    floor = summary["trivial"]["mean"] if summary.get("trivial") else None
    budgets = [f"{b:g}" for b in sorted(recipe.budgets)]
    for strategy in ("uniform_budget", "uniform_count"):
        by_budget = summary["strategies"].get(strategy)
        if not by_budget or not all(b in by_budget for b in budgets):
            continue
        means = [by_budget[b]["mean"] for b in budgets]
        checks[strategy] = {"means": means,
                            "rises_with_budget": all(later > earlier for earlier, later in itertools.pairwise(means)),
                            "above_trivial": floor is not None and all(m > floor for m in means)}
    return checks


def format_table(recipe, summary: dict) -> str:
    budgets = [f"{b:g}" for b in recipe.budgets]
    lines = ["| strategy | " + " | ".join(f"budget {b}" for b in budgets) + " |",
             "| --- | " + " | ".join("---:" for _ in budgets) + " |"]
    for strategy in recipe.strategies:
        by_budget = summary["strategies"].get(strategy, {})
        cells = []
        for budget in budgets:
            stats = by_budget.get(budget)
            cells.append("" if stats is None else f"{stats['mean']:+.2f} ± {stats['std']:.2f} (n={stats['n']})")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    if summary.get("trivial"):
        trivial = summary["trivial"]
        lines.append("| constant prediction | " + " | ".join(
            f"{trivial['mean']:+.2f} ± {trivial['std']:.2f}" for _ in budgets) + " |")
    return "\n".join(lines)


def write_plot(recipe, summary: dict, path: Path) -> Path | None:
    """Delta_T against budget per strategy (error bars: the spread over seeds); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    budgets = sorted(recipe.budgets)
    figure, axes = plt.subplots(figsize=(6, 4))
    for strategy in recipe.strategies:
        by_budget = summary["strategies"].get(strategy, {})
        xs = [b for b in budgets if f"{b:g}" in by_budget]
        if not xs:
            continue
        means = [by_budget[f"{b:g}"]["mean"] for b in xs]
        stds = [by_budget[f"{b:g}"]["std"] for b in xs]
        axes.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=strategy)
    if summary.get("trivial"):
        axes.axhline(summary["trivial"]["mean"], color="grey", linestyle="--", label="constant prediction")
    axes.axhline(0.0, color="black", linewidth=0.8, label="all labels (reference)")
    axes.set_xscale("log")
    axes.set_xlabel("label budget")
    axes.set_ylabel("Delta_T vs. all labels (%)")
    axes.set_title(f"{recipe.dataset}: multi-task score against budget")
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _check_folder(output: Path, recipe_dict: dict, overwrite: bool) -> None:
    record = output / SIMULATION_FILE
    if record.is_file() and not overwrite:
        previous = _read_result(record) or {}
        if previous.get("recipe") != recipe_dict:
            raise ConfigError(f"'{output}' holds a simulation of another recipe",
                              "pass another --output, or --overwrite to start it again")
    if overwrite and (output / "cells").is_dir():
        import shutil

        shutil.rmtree(output / "cells")
        for name in (RESULTS_FILE, TABLE_FILE, PLOT_FILE, SIMULATION_FILE):
            (output / name).unlink(missing_ok=True)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record, {"recipe": recipe_dict})


def simulate(recipe, output_dir: str | os.PathLike, data_dir=None, workers: int | None = None,
             overwrite: bool = False, progress: bool | None = None) -> SimulationResult:
    """Run a recipe's grid (see the module docstring); finished cells of an earlier attempt are kept.

    Args:
        recipe (`BudgetRecipe`): the setting and the grid.
        output_dir (`str`): the simulation folder.
        data_dir (`str`, *optional*): the data folder of a real-data recipe.
        workers (`int`, *optional*): cells trained at once (default: the recipe's, else the CPU cores).
        overwrite (`bool`): discard the cells of an earlier simulation in `output_dir`.
        progress (`bool`, *optional*): a progress bar over the grid (default: on a terminal).
    """
    import multiprocessing

    from tqdm.auto import tqdm

    from ..recipes import recipe_to_dict

    check_recipe(recipe)
    output = Path(output_dir)
    recipe_dict = recipe_to_dict(recipe)
    _check_folder(output, recipe_dict, overwrite)
    pool, test = load_data(recipe, data_dir)  # data errors surface before any cell starts
    cells = grid(recipe)
    results: dict[str, dict] = {}
    for cell in cells:
        done = _read_result(output / "cells" / cell.name / RESULT_FILE)
        if done is not None:
            results[cell.name] = done
    pending = [cell for cell in cells if cell.name not in results]
    cores = os.cpu_count() or 1
    workers = workers or recipe.workers or cores
    workers = max(1, min(workers, len(pending) or 1))
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    start = time.perf_counter()
    bar = tqdm(total=len(cells), initial=len(results), desc="budget simulation", unit="cell", disable=disable)
    try:
        if workers == 1:
            for cell in pending:
                bar.set_postfix_str(cell.name)
                results[cell.name] = run_cell(recipe, cell, output, data_dir, data=(pool, test))
                bar.update(1)
        elif pending:
            threads = max(1, cores // workers)
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as executor:
                futures = {executor.submit(_cell_job, recipe_dict, cell.to_dict(), str(output),
                                           None if data_dir is None else str(data_dir), threads): cell
                           for cell in pending}
                try:
                    remaining = set(futures)
                    while remaining:
                        finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                        for future in finished:
                            cell = futures[future]
                            results[cell.name] = future.result()
                            bar.set_postfix_str(cell.name)
                            bar.update(1)
                except BaseException:
                    executor.shutdown(wait=False, cancel_futures=True)
                    raise
    except BrokenProcessPool as error:
        raise DistributedError(
            f"a worker process of the simulation died ({error}); {len(results)} of {len(cells)} cells are done",
            "call simulate() under `if __name__ == \"__main__\":` in a script (worker processes are spawned), or "
            "pass workers=1; finished cells are kept when you run it again") from error
    except (KeyboardInterrupt, TrainingInterrupted) as error:
        raise TrainingInterrupted(
            f"the simulation stopped with {len(results)} of {len(cells)} cells done ({type(error).__name__})",
            "run the same command again: finished cells are kept and the next unfinished cell starts") from None
    finally:
        bar.close()
    ordered = [results[cell.name] for cell in cells]
    summary = summarise(recipe, ordered)
    table = format_table(recipe, summary)
    plot = write_plot(recipe, summary, output / PLOT_FILE)
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": cores, "python": platform.python_version()}
    payload = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine,
               "recipe": recipe_dict, "summary": summary, "cells": ordered, "table": table,
               "plot": PLOT_FILE if plot else None, "workers": workers,
               "seconds_this_attempt": time.perf_counter() - start,
               "cell_seconds_total": sum(r.get("seconds", 0.0) for r in ordered),
               "note": "Delta_T (%) of each cell against the model trained on every label of the pool (same seed); "
                       "taba is effhub's reconstruction of Task-Adaptive Budget Allocation, not the authors' code"}
    atomic_write_json(output / RESULTS_FILE, payload)
    atomic_write_text(output / TABLE_FILE, table + "\n")
    return SimulationResult(output, ordered, summary, table)


def run_demo(options) -> int:
    """`effhub demo budget`: the demo grid (3 strategies x 2 budgets x 1 seed) into `options.output_dir`."""
    from ..recipes import load_recipe

    recipe = load_recipe("budget", "demo", options.overrides)
    result = simulate(recipe, Path(options.output_dir))
    print(result.table)
    print(f"effhub: simulation written to {result.output_dir}")
    return 0


__all__ = [
    "Cell",
    "SimulationResult",
    "check_recipe",
    "format_table",
    "grid",
    "load_data",
    "run_cell",
    "run_demo",
    "simulate",
    "summarise",
]
