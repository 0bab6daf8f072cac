"""`python -m benchmarks [--quick] adashare`: AdaShare (Sun et al., NeurIPS 2020, arXiv 1911.12423) measured three ways.

1. Backbone parameters for T tasks: AdaShare (one backbone; blocks no task executes are dropped) against T single-task
   backbones and against hard sharing (one backbone); heads are counted separately (the same per-task heads in all).
2. Per-task inference time with the learned policy against all blocks executed, next to the fraction of multiply-adds
   the policy executes (backbone + the task's head). Timed on a full-width (base width 64) model carrying the learned
   policy: at the demo width a forward pass is too short for its time to be dominated by the convolutions.
3. Multi-task quality on the generated scenes, several seeds: the re-trained AdaShare (the demo recipe's most likely
   policy), hard sharing, the paper's random-policy ablation (per task as many executed blocks as AdaShare's, at
   random positions) and one single-task model per task. Each final model is trained from the same initial weights
   for the same number of weight-update steps (`retrain_steps`); AdaShare's warm-up and policy-learning phases are
   spent choosing its architecture and are not counted. Delta_T (full metric set, `effhub.multitask.delta_t`) is
   against the single-task models of the same seed; paired differences per seed (AdaShare minus hard sharing, minus
   random). Every model is evaluated with task-specific BN statistics and, for the effect, with the shared ones. The
   single-task references are checked against constant predictions (majority class, mean depth, mean normal).

Writes a table to stdout and `benchmarks/results/adashare.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from effhub.tables import text_table

RESULTS = Path(__file__).resolve().parent.parent / "results" / "adashare.json"
# quick: the demo recipe with shortened phases (a few minutes on 2 CPU cores); full: the demo recipe as shipped
QUICK_OVERRIDES = ["warmup_steps=60", "policy_epochs=10", "weight_steps_per_epoch=4", "policy_steps_per_epoch=4",
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


def random_policy(policy: dict, seed: int, draw: int = 0) -> dict:
    """The paper's ablation: per task, as many executed blocks as `policy` executes, at random (seeded) positions;
    `draw` numbers further placements of the same seed (draw 0 is the single ablation of earlier runs)."""
    import torch

    generator = torch.Generator().manual_seed(10_000 + seed + 100_000 * draw)
    result = {}
    for task, plan in policy.items():
        order = torch.randperm(len(plan), generator=generator).tolist()
        chosen = set(order[:sum(plan)])
        result[task] = [int(index in chosen) for index in range(len(plan))]
    return result


def _scores_both_ways(model, test_set, collate_fn, batch_size) -> dict:
    """Test scores with task-specific BatchNorm statistics and with the shared ones (tracked over every pass)."""
    from effhub.models.adashare.training_adashare import evaluate_model

    scores = {}
    for label, flag in (("task_bn", True), ("shared_bn", False)):
        model.config.task_specific_bn = flag
        scores[label] = evaluate_model(None, model, test_set, collate_fn, batch_size)
    model.config.task_specific_bn = True
    return scores


def baseline_scores(recipe, run_dir: Path, adashare_config, candidates: int = 1, resume: bool = False) -> dict:
    """Hard sharing and the random policy, trained like the re-trained AdaShare (same initial weights, same steps,
    same split, same class weights) in runs of their own beside the AdaShare run (`<run_dir>-baselines-<stage>`).

    Each gets as many trainings as AdaShare re-trained candidates (`candidates`), and the best on validation is kept
    by the same normalised selection score: hard sharing restarts with the data order of seed `seed + 1000 * i`,
    the random policy draws `candidates` placements (same block counts). Returns, per baseline, the kept policy, its
    validation scores, its test scores with task-specific and with shared BN statistics, and every candidate's
    validation scores and selection score."""
    from datasets import concatenate_datasets
    from safetensors.torch import load_file

    from effhub.models.adashare.training_adashare import (
        CANDIDATES_FILE, INITIAL_WEIGHTS_FILE, SPLITS_FILE, SplitIds, load_datasets, make_collator,
        train_fixed_architecture)
    from effhub.multitask import selection_score
    from effhub.training import Run, RunLayout, RunOptions

    train_set, test_set = load_datasets(recipe)
    layout = RunLayout(run_dir)
    # the run's own (seeded) split: the same train1 + train2 the re-trained AdaShare saw, and its validation split
    train1, train2, val = SplitIds.load(layout.artifact(SPLITS_FILE)).select(train_set)
    train_data = concatenate_datasets([train1, train2])
    normaliser = json.loads(layout.artifact(CANDIDATES_FILE).read_text()).get("selection_normaliser")
    config = recipe.model_config(segmentation_class_weights=adashare_config.segmentation_class_weights)
    tasks = config.task_names
    initial = load_file(str(layout.private(INITIAL_WEIGHTS_FILE)))
    collate_fns = (make_collator(recipe, tasks, True), make_collator(recipe, tasks, False))
    datasets = {"train": train_data, "val": val}
    # hard sharing: restart i in a run of seed `seed + 1000 * i` (its data order); random: draw i, the run's seed
    plans = {"hard_sharing": [({task: [1] * config.num_blocks for task in tasks}, recipe.seed + 1000 * draw)
                              for draw in range(candidates)],
             "random_policy": [(random_policy(adashare_config.policy, recipe.seed, draw), recipe.seed)
                               for draw in range(candidates)]}
    results = {}
    for name, tries in plans.items():
        kept, kept_model, tried = None, None, []
        for draw, (plan, run_seed) in enumerate(tries):
            stage = name.replace("_", "-") + (f"-{draw}" if draw else "")
            options = RunOptions(output_dir=f"{run_dir}-baselines-{stage}", progress=False, resume=resume)
            with Run(options, method="adashare", seed=run_seed) as run:
                result = train_fixed_architecture(run, recipe, recipe.seed, stage, config, plan, initial, datasets,
                                                  test_set, collate_fns)
            score = selection_score(result.outputs["val"], normaliser)
            tried.append({"policy": plan, "run_seed": run_seed, "val": result.outputs["val"], "score": score,
                          "test": result.outputs["test"]})
            if kept is None or score > kept["score"]:
                kept, kept_model = tried[-1], result.model
        results[name] = {"policy": kept["policy"], "val": kept["val"], "candidates": tried,
                         **_scores_both_ways(kept_model, test_set, collate_fns[1], recipe.eval_batch_size)}
    return results


def trivial_baselines(recipe) -> dict:
    """Test scores of constant predictions from the training labels: the majority class (segmentation), the mean
    depth, the mean normal direction."""
    import numpy as np

    from effhub.models.adashare.training_adashare import load_datasets

    train_set, test_set = load_datasets(recipe)
    config = recipe.model_config()
    result = {}
    for task, kind in config.task_types.items():
        train_labels = np.stack([np.asarray(v) for v in train_set[task]]).astype(np.float64)
        test_labels = np.stack([np.asarray(v) for v in test_set[task]]).astype(np.float64)
        if kind == "segmentation":
            valid = train_labels != config.ignore_index
            majority = int(np.bincount(train_labels[valid].astype(int)).argmax())
            valid = test_labels != config.ignore_index
            hit = (test_labels == majority) & valid
            # IoU of the majority class (every valid pixel predicted as it); every other class scores 0
            result[task] = {"mean_iou": float(hit.sum() / valid.sum()) / config.tasks[task], "majority_class": majority}
        elif kind == "depth":
            train_valid, valid = train_labels > 0, test_labels > 0
            constant = float(train_labels[train_valid].mean())
            result[task] = {"abs_err": float(np.abs(test_labels[valid] - constant).mean()), "constant": constant}
        elif kind == "normals":
            channel_axis = 1 if train_labels.shape[1] == 3 else -1
            train_n = np.moveaxis(train_labels, channel_axis, -1).reshape(-1, 3)
            test_n = np.moveaxis(test_labels, channel_axis, -1).reshape(-1, 3)
            train_n = train_n[np.linalg.norm(train_n, axis=1) > 0]
            test_n = test_n[np.linalg.norm(test_n, axis=1) > 0]
            mean = train_n.mean(axis=0)
            mean = mean / np.linalg.norm(mean)
            cosine = np.clip(test_n @ mean / np.linalg.norm(test_n, axis=1), -1, 1)
            result[task] = {"mean_angle": float(np.degrees(np.arccos(cosine)).mean())}
    return result


def trivial_check(references: dict, trivial: dict, margin: float = 0.1) -> dict:
    """Per task: the reference's headline, the trivial one, and whether it is better by at least `margin` (relative)."""
    from effhub.multitask import LOWER_IS_BETTER

    check = {}
    for task, baseline in trivial.items():
        metric = next(key for key in ("mean_iou", "abs_err", "mean_angle") if key in baseline)
        ours, theirs = references[task][metric], baseline[metric]
        gain = (theirs - ours) / theirs if LOWER_IS_BETTER[metric] else (ours - theirs) / theirs
        check[task] = {"metric": metric, "reference": ours, "trivial": theirs, "relative_gain": gain,
                       "clearly_above": gain >= margin}
    return check


def quality_run(recipe, seed: int, workdir: Path, resume: bool = False) -> dict:
    """One seed: the AdaShare run (single-task references, policy, re-training), hard sharing and the random policy;
    Delta_T of each, with task-specific and with shared BN statistics. `resume`: skip the stages an earlier,
    interrupted benchmark finished in `workdir` (`--workdir`)."""
    from effhub.models.adashare import AdaShareModel
    from effhub.models.adashare.training_adashare import (delta_t, load_datasets, make_collator, train)
    from effhub.training import RunOptions

    started = time.perf_counter()
    recipe = dataclasses.replace(recipe, seed=seed, single_task_references=True)
    run_dir = workdir / f"seed-{seed}"
    train(recipe, RunOptions(output_dir=run_dir, progress=False, resume=resume))
    extra = json.loads((run_dir / "eval_results.json").read_text())["extra"]
    model = AdaShareModel.from_pretrained(run_dir)
    _, test_set = load_datasets(recipe)
    ours = _scores_both_ways(model, test_set, make_collator(recipe, model.config.task_names, False),
                             recipe.eval_batch_size)
    record = json.loads((run_dir / "retrain_candidates.json").read_text())
    adashare_candidates = record["candidates"]
    baselines = baseline_scores(recipe, run_dir, model.config, len(adashare_candidates), resume)
    references, val_references = extra["single_task"], record["selection_normaliser"]
    scores = {"adashare": ours, "hard_sharing": baselines["hard_sharing"],
              "random_policy": baselines["random_policy"]}
    deltas = {name: delta_t(model.config, value["task_bn"], references)["delta_t"] for name, value in scores.items()}
    # the same Delta_T on the validation split (against the single-task models' validation scores): what a choice
    # between recipes may look at
    val_scores = {"adashare": adashare_candidates[record["best"]]["val"],
                  **{name: baselines[name]["val"] for name in ("hard_sharing", "random_policy")}}
    deltas_val = {name: delta_t(model.config, value, val_references)["delta_t"] for name, value in val_scores.items()}
    candidates = {"adashare": [{"policy": c["policy"], "selection_score": c["score"],
                                "delta_t_val": delta_t(model.config, c["val"], val_references)["delta_t"],
                                "delta_t_test": delta_t(model.config, c["test"], references)["delta_t"]}
                               for c in adashare_candidates]}
    for name in ("hard_sharing", "random_policy"):
        candidates[name] = [{"policy": c["policy"], "run_seed": c["run_seed"], "selection_score": c["score"],
                             "delta_t_val": delta_t(model.config, c["val"], val_references)["delta_t"],
                             "delta_t_test": delta_t(model.config, c["test"], references)["delta_t"]}
                            for c in baselines[name]["candidates"]]
    deltas_shared_bn = {name: delta_t(model.config, value["shared_bn"], references)["delta_t"]
                        for name, value in scores.items()}
    deltas["warmup_model"] = extra["delta_t_warmup_hard_sharing"]
    return {"seed": seed, "policy": model.config.policy, "random_policy": baselines["random_policy"]["policy"],
            "executed_fraction": extra["executed_fraction"], "select_probabilities": extra["select_probabilities"],
            "scores": {**{name: value["task_bn"] for name, value in scores.items()},
                       "warmup_model": extra["warmup_hard_sharing"], "single_task": references},
            "scores_shared_bn": {name: value["shared_bn"] for name, value in scores.items()},
            "delta_t": deltas, "delta_t_shared_bn": deltas_shared_bn, "delta_t_val": deltas_val,
            "selected_candidate": record["best"], "candidates": candidates,
            "seconds": time.perf_counter() - started}


def _summary(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.pstdev(values), "per_seed": values}


def _quality_job(args):
    recipe, seed, workdir, resume = args
    import torch

    torch.set_num_threads(1)
    return quality_run(recipe, seed, Path(workdir), resume)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks adashare", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shortened phases (a few minutes on 2 CPU cores)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained in parallel processes")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra recipe overrides (key=value), applied after --quick's")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the run folders here (default: a temporary folder); a second invocation with the "
                             "same folder and settings resumes it, skipping the stages already finished")
    parser.add_argument("--timing-repeats", type=int, default=None)
    parser.add_argument("--timing-size", type=int, nargs=2, default=[128, 128], metavar=("H", "W"))
    args = parser.parse_args(argv)

    import torch

    from effhub.models.adashare import AdaShareModel
    from effhub.recipes import load_recipe

    overrides = (QUICK_OVERRIDES if args.quick else []) + args.overrides
    recipe = load_recipe("adashare", "demo", overrides)
    started = time.perf_counter()
    with (contextlib.nullcontext(str(args.workdir)) if args.workdir else tempfile.TemporaryDirectory()) as workdir:
        print(f"-- seeds {args.seeds}: AdaShare run (single-task references, policy, re-training), hard sharing, "
              f"random policy; {args.jobs} job(s)", flush=True)
        jobs = [(recipe, seed, workdir, args.workdir is not None) for seed in args.seeds]
        if args.jobs > 1:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
                runs = pool.map(_quality_job, jobs)
        else:
            runs = [_quality_job(job) for job in jobs]
        model = AdaShareModel.from_pretrained(Path(workdir) / f"seed-{args.seeds[0]}")
    trivial = trivial_baselines(recipe)
    for run in runs:
        run["trivial_check"] = trivial_check(run["scores"]["single_task"], trivial)
    image_size = (recipe.dataset_options["config"]["height"], recipe.dataset_options["config"]["width"])
    parameters = backbone_parameters(model)
    timing_size = tuple(args.timing_size)
    timing = inference_times(model.config.policy, model.config, timing_size, 4,
                             args.timing_repeats or (5 if args.quick else 15))

    names = {"adashare": "AdaShare (re-trained, learned policy)", "hard_sharing": "hard sharing (same steps)",
             "random_policy": "random policy (same block count)",
             "warmup_model": "hard sharing (warm-up model of the run)"}
    summary = {name: _summary([r["delta_t"][name] for r in runs]) for name in names}
    summary_shared_bn = {name: _summary([r["delta_t_shared_bn"][name] for r in runs])
                         for name in ("adashare", "hard_sharing", "random_policy")}
    summary_val = {name: _summary([r["delta_t_val"][name] for r in runs])
                   for name in ("adashare", "hard_sharing", "random_policy")}
    paired, paired_val = {}, {}
    for other in ("hard_sharing", "random_policy"):
        for key, target in (("delta_t", paired), ("delta_t_val", paired_val)):
            differences = [r[key]["adashare"] - r[key][other] for r in runs]
            target[f"adashare_minus_{other}"] = {**_summary(differences),
                                                 "seeds_won": sum(d > 0 for d in differences),
                                                 "seeds": len(differences)}
    tasks = model.config.task_names
    mac_fraction = {task: statistics.mean(r["executed_fraction"][task] for r in runs) for task in tasks}
    mean_mac_fraction = statistics.mean(mac_fraction.values())
    trivial_ok = all(check["clearly_above"] for r in runs for check in r["trivial_check"].values())
    targets = {
        "adashare_above_hard_sharing_on_mean": paired["adashare_minus_hard_sharing"]["mean"] > 0,
        "adashare_above_hard_sharing_on_4_of_5_seeds":
            paired["adashare_minus_hard_sharing"]["seeds_won"] >= 0.8 * len(runs),
        "adashare_above_random_on_mean": paired["adashare_minus_random_policy"]["mean"] > 0,
        "mac_fraction_at_most_0.8": mean_mac_fraction <= 0.8,
        "single_task_references_clearly_above_trivial": trivial_ok,
    }
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads, {platform.system()}",
        "quick": args.quick, "recipe": "demo", "overrides": overrides, "jobs": args.jobs,
        "counted_steps": {"retrain_steps": recipe.retrain_steps, "batch_size": recipe.batch_size,
                          "not_counted": {"warmup_steps": recipe.warmup_steps,
                                          "policy_epochs": recipe.policy_epochs}},
        "parameters": parameters, "timing_image_size": list(timing_size), "timing_base_width": TIMING_WIDTH,
        "timing": timing, "quality": runs, "trivial_baselines": trivial, "delta_t": summary,
        "delta_t_shared_bn": summary_shared_bn, "paired": paired, "delta_t_val": summary_val,
        "paired_val": paired_val, "candidates_per_model": [len(r["candidates"]["adashare"]) for r in runs],
        "mac_fraction": mac_fraction,
        "mean_mac_fraction": mean_mac_fraction, "targets": targets,
        "target_adashare_above_hard_sharing": targets["adashare_above_hard_sharing_on_mean"],
        "seconds": time.perf_counter() - started, "image_size": list(image_size),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    from effhub.atomic import atomic_write_json

    atomic_write_json(args.output, result)

    print(f"\n(1) backbone parameters for {parameters['tasks']} tasks (heads separately: {parameters['heads']:,})")
    print(text_table([("model", "backbone parameters")] + [
        ("AdaShare", f"{parameters['adashare']:,}"), (f"{parameters['tasks']} single-task backbones",
                                                      f"{parameters['single_task']:,}"),
        ("hard sharing", f"{parameters['hard_sharing']:,}")]))
    print(f"\n(2) inference per task, batch 4 at {timing_size[0]}x{timing_size[1]}, base width {TIMING_WIDTH}, "
          f"learned policy of seed {args.seeds[0]}; executed-MAC fraction averaged over seeds")
    print(text_table([("task", "blocks", "policy ms", "all blocks ms", "time ratio", "MAC fraction", "MAC fr. (seeds)")]
                 + [(task, f"{t['blocks_executed']}/{t['blocks']}", f"{1000 * t['policy_seconds']:.1f}",
                     f"{1000 * t['all_blocks_seconds']:.1f}", f"{t['time_ratio']:.2f}", f"{t['mac_fraction']:.2f}",
                     f"{mac_fraction[task]:.2f}") for task, t in timing.items()]))
    print(f"\n(3) Delta_T (%) against single-task models, {len(runs)} seeds, {recipe.retrain_steps} weight-update "
          f"steps per final model{' [quick]' if args.quick else ''}; task-specific BN (shared BN in brackets)")
    print(text_table([("model", "mean", "std", "per seed")] + [
        (label, f"{summary[name]['mean']:+.2f}" + (f" ({summary_shared_bn[name]['mean']:+.2f})"
                                                   if name in summary_shared_bn else ""),
         f"{summary[name]['std']:.2f}", " ".join(f"{v:+.2f}" for v in summary[name]["per_seed"]))
        for name, label in names.items()]))
    print("\npaired differences (Delta_T points)")
    print(text_table([("difference", "mean", "std", "seeds won", "per seed")] + [
        (name, f"{d['mean']:+.2f}", f"{d['std']:.2f}", f"{d['seeds_won']}/{d['seeds']}",
         " ".join(f"{v:+.2f}" for v in d["per_seed"])) for name, d in paired.items()]))
    print("\nthe same on the validation split (what a choice between recipes may look at)")
    print(text_table([("model / difference", "mean", "std", "seeds won", "per seed")] + [
        (name, f"{d['mean']:+.2f}", f"{d['std']:.2f}", "", " ".join(f"{v:+.2f}" for v in d["per_seed"]))
        for name, d in summary_val.items()] + [
        (name, f"{d['mean']:+.2f}", f"{d['std']:.2f}", f"{d['seeds_won']}/{d['seeds']}",
         " ".join(f"{v:+.2f}" for v in d["per_seed"])) for name, d in paired_val.items()]))
    print("\ntrivial-baseline check (single-task reference vs constant prediction, relative gain)")
    print(text_table([("seed", *tasks)] + [
        (r["seed"], *(f"{c['reference']:.3f} vs {c['trivial']:.3f} ({c['relative_gain']:+.0%})"
                      for c in (r["trivial_check"][task] for task in tasks))) for r in runs]))
    print("\ntargets: " + ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in targets.items()))
    print(f"written {args.output} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
