"""`python -m benchmarks [--quick] adashare`: AdaShare (Sun et al., NeurIPS 2020, arXiv 1911.12423) measured three ways.

1. Backbone parameters for T tasks: AdaShare (one backbone; blocks no task executes are dropped) against T single-task
   backbones and against hard sharing (one backbone); heads are counted separately (the same per-task heads in all).
2. Per-task inference time with the learned policy against all blocks executed, next to the fraction of multiply-adds
   the policy executes (backbone + the task's head). Timed on a full-width (base width 64) model carrying the learned
   policy: at the demo width a forward pass is too short for its time to be dominated by the convolutions.
3. Multi-task quality on the generated scenes, several seeds: the re-trained AdaShare, a hard-sharing model and one
   single-task model per task. Each final model is trained from the same initial weights for the same number of
   weight-update steps (`retrain_steps`, the re-training phase); AdaShare's warm-up and policy-learning phases are
   spent choosing its architecture and are not counted. Delta_T (`effhub.metrics.multitask_delta`) is against the
   single-task models of the same seed. The hard-sharing row uses every block from the initial weights; the warm-up
   model of the AdaShare run (fewer steps) is reported beside it.

Writes a table to stdout and `benchmarks/results/adashare.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "results" / "adashare.json"
# quick: the demo recipe with shortened phases (a few minutes on 2 CPU cores); full: the demo recipe as shipped
QUICK_OVERRIDES = ["warmup_steps=60", "policy_epochs=6", "weight_steps_per_epoch=8", "policy_steps_per_epoch=8",
                   "retrain_steps=100"]
TIMING_WIDTH = 64


def backbone_parameters(model) -> dict[str, int]:
    """Backbone parameters of AdaShare (blocks executed by at least one task), T single-task backbones and one
    hard-shared backbone, and the heads of all tasks."""
    backbone = model.backbone
    total = sum(p.numel() for p in backbone.parameters())
    plans = [model.execution_plan(task) for task in model.config.task_names]
    unused, index = 0, 0
    for stage in backbone.stages:
        for block in stage.blocks:
            if not any(plan[index] for plan in plans):
                unused += sum(p.numel() for p in block.parameters())
            index += 1
    tasks = len(model.config.task_names)
    return {"tasks": tasks, "adashare": total - unused, "single_task": tasks * total, "hard_sharing": total,
            "heads": sum(p.numel() for p in model.heads.parameters())}


def inference_times(policy: dict, config, image_size, batch_size: int, repeats: int) -> dict[str, dict[str, float]]:
    """Per task: median seconds of a forward pass with the learned policy and with every block, and the fraction of
    multiply-adds the policy executes."""
    import torch

    from effhub.models.adashare import AdaShareModel

    torch.manual_seed(0)
    model = AdaShareModel(type(config)(**{**config.to_dict(), "base_width": TIMING_WIDTH, "policy": policy})).eval()
    pixel_values = torch.randn(batch_size, 3, *image_size)
    results = {}
    with torch.no_grad():
        for task in model.config.task_names:
            seconds = {}
            for mode in ("fixed", "shared", "fixed", "shared"):  # interleaved so drift hits both alike
                model(pixel_values, task=task, policy_mode=mode)  # warm-up call
                runs = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    model(pixel_values, task=task, policy_mode=mode)
                    runs.append(time.perf_counter() - start)
                seconds.setdefault(mode, []).extend(runs)
            executed = sum(model.multiply_adds(tuple(image_size), task).values())
            everything = sum(model.multiply_adds(tuple(image_size), task, policy_mode="shared").values())
            policy_time, all_time = statistics.median(seconds["fixed"]), statistics.median(seconds["shared"])
            results[task] = {"policy_seconds": policy_time, "all_blocks_seconds": all_time,
                             "time_ratio": policy_time / all_time, "mac_fraction": executed / everything,
                             "blocks_executed": sum(model.execution_plan(task)), "blocks": model.config.num_blocks}
    return results


def hard_sharing_scores(recipe, run_dir: Path) -> dict:
    """Test scores of a hard-sharing model trained like the re-trained AdaShare (same initial weights, same steps).

    It trains as a run of its own beside the AdaShare run (`<run_dir>-hard-sharing`), on the AdaShare run's split."""
    from datasets import concatenate_datasets
    from safetensors.torch import load_file

    from effhub.models.adashare.training_adashare import (
        INITIAL_WEIGHTS_FILE, SPLITS_FILE, SplitIds, load_datasets, make_collator, train_fixed_architecture)
    from effhub.training import Run, RunLayout, RunOptions

    train_set, test_set = load_datasets(recipe)
    layout = RunLayout(run_dir)
    # the run's own (seeded) split: the same train1 + train2 the re-trained AdaShare saw
    train1, train2, _ = SplitIds.load(layout.artifact(SPLITS_FILE)).select(train_set)
    train_data = concatenate_datasets([train1, train2])
    config = recipe.model_config()
    tasks = config.task_names
    options = RunOptions(output_dir=f"{run_dir}-hard-sharing", progress=False)
    with Run(options, method="adashare", seed=recipe.seed) as run:
        result = train_fixed_architecture(
            run, recipe, recipe.seed, "hard-sharing", config, {task: [1] * config.num_blocks for task in tasks},
            load_file(str(layout.private(INITIAL_WEIGHTS_FILE))), {"train": train_data}, test_set,
            (make_collator(recipe, tasks, True), make_collator(recipe, tasks, False)))
    return result.outputs["test"]


def quality_run(recipe, seed: int, workdir: Path) -> dict:
    """One seed: the AdaShare run (with its single-task references) and a hard-sharing model; Delta_T of each."""
    from effhub.models.adashare import AdaShareModel
    from effhub.models.adashare.training_adashare import delta_t, train
    from effhub.training import RunOptions

    recipe = dataclasses.replace(recipe, seed=seed, single_task_references=True)
    run_dir = workdir / f"seed-{seed}"
    train(recipe, RunOptions(output_dir=run_dir, progress=False))
    extra = json.loads((run_dir / "eval_results.json").read_text())["extra"]
    model = AdaShareModel.from_pretrained(run_dir)
    hard = hard_sharing_scores(recipe, run_dir)
    return {"seed": seed, "policy": model.config.policy, "executed_fraction": extra["executed_fraction"],
            "scores": {"adashare": extra["scores"], "hard_sharing": hard, "warmup_model": extra["warmup_hard_sharing"],
                       "single_task": extra["single_task"]},
            "delta_t": {"adashare": extra["delta_t"],
                        "hard_sharing": delta_t(model.config, hard, extra["single_task"])["delta_t"],
                        "warmup_model": extra["delta_t_warmup_hard_sharing"]},
            "model": model}


def _table(rows: list[tuple]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks adashare", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shortened phases (a few minutes on 2 CPU cores)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra recipe overrides (key=value), applied after --quick's")
    parser.add_argument("--timing-repeats", type=int, default=None)
    parser.add_argument("--timing-size", type=int, nargs=2, default=[128, 128], metavar=("H", "W"))
    args = parser.parse_args(argv)

    import torch

    from effhub.recipes import load_recipe

    recipe = load_recipe("adashare", "demo", (QUICK_OVERRIDES if args.quick else []) + args.overrides)
    started = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as workdir:
        for seed in args.seeds:
            print(f"-- seed {seed}: AdaShare run with single-task references, then hard sharing", flush=True)
            runs.append(quality_run(recipe, seed, Path(workdir)))
    model = runs[0].pop("model")
    for run in runs[1:]:
        run.pop("model")
    image_size = (recipe.dataset_options["config"]["height"], recipe.dataset_options["config"]["width"])
    parameters = backbone_parameters(model)
    timing_size = tuple(args.timing_size)
    timing = inference_times(model.config.policy, model.config, timing_size, 4,
                             args.timing_repeats or (5 if args.quick else 15))

    names = {"adashare": "AdaShare (re-trained)", "hard_sharing": "hard sharing (same steps)",
             "warmup_model": "hard sharing (warm-up model of the run)"}
    summary = {name: {"mean": statistics.mean(r["delta_t"][name] for r in runs),
                      "std": statistics.pstdev(r["delta_t"][name] for r in runs),
                      "per_seed": [r["delta_t"][name] for r in runs]} for name in names}
    target_met = summary["adashare"]["mean"] > summary["hard_sharing"]["mean"]
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads, {platform.system()}",
        "quick": args.quick, "recipe": "demo",
        "overrides": (QUICK_OVERRIDES if args.quick else []) + args.overrides,
        "counted_steps": {"retrain_steps": recipe.retrain_steps, "batch_size": recipe.batch_size,
                          "not_counted": {"warmup_steps": recipe.warmup_steps,
                                          "policy_epochs": recipe.policy_epochs}},
        "parameters": parameters, "timing_image_size": list(timing_size), "timing_base_width": TIMING_WIDTH,
        "timing": timing, "quality": runs, "delta_t": summary, "target_adashare_above_hard_sharing": target_met,
        "seconds": time.perf_counter() - started, "image_size": list(image_size),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    from effhub.atomic import atomic_write_json

    atomic_write_json(args.output, result)

    print(f"\n(1) backbone parameters for {parameters['tasks']} tasks (heads separately: {parameters['heads']:,})")
    print(_table([("model", "backbone parameters")] + [
        ("AdaShare", f"{parameters['adashare']:,}"), (f"{parameters['tasks']} single-task backbones",
                                                      f"{parameters['single_task']:,}"),
        ("hard sharing", f"{parameters['hard_sharing']:,}")]))
    print(f"\n(2) inference per task, batch 4 at {timing_size[0]}x{timing_size[1]}, base width {TIMING_WIDTH}, "
          f"learned policy of seed {args.seeds[0]}")
    print(_table([("task", "blocks", "policy ms", "all blocks ms", "time ratio", "MAC fraction")] + [
        (task, f"{t['blocks_executed']}/{t['blocks']}", f"{1000 * t['policy_seconds']:.1f}",
         f"{1000 * t['all_blocks_seconds']:.1f}", f"{t['time_ratio']:.2f}", f"{t['mac_fraction']:.2f}")
        for task, t in timing.items()]))
    print(f"\n(3) Delta_T (%) against single-task models, {len(runs)} seeds, {recipe.retrain_steps} weight-update "
          f"steps per final model (re-training phase){' [quick]' if args.quick else ''}")
    print(_table([("model", "mean", "std", "per seed")] + [
        (label, f"{summary[name]['mean']:+.2f}", f"{summary[name]['std']:.2f}",
         " ".join(f"{v:+.2f}" for v in summary[name]["per_seed"])) for name, label in names.items()]))
    print(f"target (AdaShare's Delta_T above hard sharing's): {'met' if target_met else 'MISSED'}")
    print(f"written {args.output} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
