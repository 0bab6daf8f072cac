"""`python -m benchmarks [--quick] videoiq`: VideoIQ (Sun et al., ICCV 2021, arXiv 2108.10394) on the generated clips.

One run of the three training stages (the full benchmark: the `width16` recipe, the smallest network whose bits and
skips buy CPU time, tested on 2000 clips, about 11 minutes on 2 CPU cores; `--quick`: the demo recipe on its 512;
`--recipe` another), or an existing run (`--from-run`), then:

0. The test-bed check: top-1 from the frames of one kind alone (the others left out), at full precision and at every
   bit-width of the family: what each precision loses on each kind of frame, i.e. what a per-frame policy can buy.
1. Accuracy against average cost, both measures (exact BitOPs and the paper's GFLOPs proxy), as ratios against the
   full-precision network measured in the same run: the learned policy (dynamic inference), every uniform bit-width
   of the family, the unquantised network, a uniform random policy (every action equally likely) and a random policy
   with the learned policy's share of each action (the same average cost, no frame-by-frame choice). The uniform
   curve at the policy's cost is the best that uniform precisions mixed over videos reach at that cost: the upper
   concave hull of the uniform points, a point no more accurate than a cheaper one left out. The bit-widths of 8 or
   less are then put on PyTorch's quantized CPU kernels (`prepare_int8_kernels`, calibrated on 16 training clips)
   and the policy and uniform rows are measured again on that path.
2. CPU time per clip of dynamic inference (policy included) against the full-precision backbone on every frame: in
   float simulation of the quantisers and on the int8 kernels; the full-precision backbone on only the frames the
   policy executes gives the saving of skips alone, simulation minus kernels the saving of the kernels. Timed
   first, right after loading (the targets read this); timed again after the evaluations and recorded beside it
   (`timing_after_evaluations`: the process then runs small calls measurably slower).
3. The policy network's share of the dynamic inference time.
4. The same timing at a realistic size (`--scale-width`, `--scale-image-size`; default a ResNet-18 of base width 64
   on 112 px frames): the test-bed's network is so small (width 8, 32 px) that per-call overheads decide its times.
   The trained policy (its weights, on the timing clips upsampled to that size; its input is downsampled to the
   same `policy_image_size`) drives a recognition network of that size with *random* weights, so the time is
   measured for the policy's own decisions while the accuracy at that size is not (the share of frames whose action
   agrees with the test-bed run is recorded).

The machine is shared: timings are medians of interleaved repeats and the load average is recorded with them.
Writes a table to stdout and `benchmarks/results/videoiq.json` (`videoiq-quick.json` with `--quick`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from effhub.tables import text_table

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
# the full benchmark: the demo recipe, tested on 2000 clips
FULL_OVERRIDES = ["data.test_clips=2000"]
QUICK_OVERRIDES: list[str] = []


def uniform_frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The uniform points `(cost, top1)` that the best mix of uniform precisions passes through: a point no more
    accurate than a cheaper one is dropped (the cheaper one serves at that cost), then the upper concave hull is
    kept (mixing two precisions over videos reaches every point on the segment between them)."""
    frontier: list[tuple[float, float]] = []
    # of points at one cost the most accurate comes first and the others are dropped: costs strictly increase
    for cost, top1 in sorted(points, key=lambda point: (point[0], -point[1])):
        if frontier and top1 <= frontier[-1][1]:
            continue
        # a middle point on or below the segment from the one before it to this one is never on the hull
        while len(frontier) >= 2 and ((frontier[-1][1] - frontier[-2][1]) * (cost - frontier[-2][0])
                                      <= (top1 - frontier[-2][1]) * (frontier[-1][0] - frontier[-2][0])):
            frontier.pop()
        frontier.append((cost, top1))
    return frontier


def uniform_curve(points: list[tuple[float, float]], cost: float) -> dict:
    """Top-1 of the uniform-precision curve at `cost`: the best accuracy that uniform precisions, mixed over videos,
    reach at that average cost (linear interpolation along `uniform_frontier`); below the cheapest point the curve
    does not exist (`None`, with the cheapest point)."""
    frontier = uniform_frontier(points)
    if cost < frontier[0][0]:
        return {"top1": None, "cheapest": {"cost": frontier[0][0], "top1": frontier[0][1]}}
    for (low_cost, low_top1), (high_cost, high_top1) in itertools.pairwise(frontier):
        if low_cost <= cost <= high_cost:
            return {"top1": low_top1 + (cost - low_cost) / (high_cost - low_cost) * (high_top1 - low_top1)}
    return {"top1": frontier[-1][1]}  # above the dearest point: the best uniform accuracy


def above_curve(policy_top1: float, policy_cost: float, points: list[tuple[float, float]]) -> dict:
    """Whether the policy lies above the uniform curve at its own cost (below the cheapest uniform point: whether it
    is also more accurate than that point, i.e. dominates it)."""
    curve = uniform_curve(points, policy_cost)
    reference = curve["top1"] if curve["top1"] is not None else curve["cheapest"]["top1"]
    return {**curve, "reference_top1": reference, "margin": policy_top1 - reference, "above": policy_top1 > reference}


def _median_seconds(functions: dict, repeats: int) -> dict[str, float]:
    """Median wall time of each function, calls interleaved so that load drift hits all alike."""
    runs = {name: [] for name in functions}
    for function in functions.values():
        function()  # warm-up
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            runs[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in runs.items()}


def cpu_times(model, pixel_values, repeats: int, int8: bool = False) -> dict:
    """Seconds per clip: full precision on every frame; dynamic inference (policy + each frame at its precision),
    with the quantised bit-widths in float simulation and, when `int8` (kernels prepared on `model`), on the int8
    kernels; the policy alone; the full-precision backbone on only the frames the policy executes (the saving of
    skips alone); uniform lowest bit-width (simulated, and on int8 kernels)."""
    import torch

    model.eval()
    with torch.no_grad():
        actions = model(pixel_values).policy.argmax(-1)
    executed = (actions < model.config.num_precisions).reshape(-1)
    flat = pixel_values.flatten(0, 1)
    batch = pixel_values.shape[0]
    lowest_bits = model.config.bit_width_family[-1]

    def full():
        model(pixel_values, precision="full")

    def policy():
        model.policy(pixel_values)

    def full_on_executed():
        features = model.frame_features(flat[executed], None)
        padded = features.new_zeros(flat.shape[0], features.shape[1])
        padded[executed] = features
        model.classify(padded.view(batch, pixel_values.shape[1], -1),
                       executed.view(batch, -1).to(features.dtype))

    def simulated(function):
        def run():
            with model.float_simulation():
                function()
        return run

    functions = {"full_precision": full, "policy": policy, "full_precision_on_executed_frames": full_on_executed,
                 "dynamic_simulated": simulated(lambda: model(pixel_values)),
                 "uniform_lowest_simulated": simulated(lambda: model(pixel_values, precision=lowest_bits))}
    if int8:
        functions["dynamic_int8"] = lambda: model(pixel_values)
        functions["uniform_lowest_int8"] = lambda: model(pixel_values, precision=lowest_bits)
    with torch.no_grad():
        seconds = _median_seconds(functions, repeats)
    per_clip = {name: value / batch for name, value in seconds.items()}
    full_time = per_clip["full_precision"]
    dynamic = per_clip["dynamic_int8"] if int8 else per_clip["dynamic_simulated"]
    skip_only = per_clip["full_precision_on_executed_frames"] / full_time
    result = {"seconds_per_clip": per_clip, "clips_per_call": batch, "repeats": repeats,
              "executed_frame_share": float(executed.float().mean()),
              "int8_kernels": bool(int8),
              "dynamic_vs_full": dynamic / full_time,
              "dynamic_simulated_vs_full": per_clip["dynamic_simulated"] / full_time,
              "skip_only_vs_full": skip_only,
              "policy_vs_full": per_clip["policy"] / full_time,
              "policy_share_of_dynamic": per_clip["policy"] / dynamic,
              # the saving against full precision, split: skipped frames (full precision on the executed frames
              # only) and 8-bit kernels (simulated minus int8 dynamic inference); the rest is the policy's and the
              # quantisers' overhead
              "saving_from_skips": 1.0 - skip_only,
              "saving_from_int8_kernels": (per_clip["dynamic_simulated"] - dynamic) / full_time,
              "load_average": list(os.getloadavg())}
    return result


def scaled_timing(model, pixel_values, base_width: int, image_size: int, repeats: int) -> dict:
    """`cpu_times` of a recognition network of `base_width` on `image_size` px frames (random weights, int8 kernels
    calibrated on these clips) driven by `model`'s trained policy on `pixel_values` upsampled to that size."""
    import torch
    import torch.nn.functional as F

    from effhub.models.videoiq import VideoIQConfig, VideoIQForVideoClassification

    config = VideoIQConfig.from_dict({**model.config.to_dict(), "base_width": base_width, "image_size": image_size})
    torch.manual_seed(0)
    scaled = VideoIQForVideoClassification(config)
    scaled.policy.load_state_dict(model.policy.state_dict())
    scaled.eval()
    batch, frames = pixel_values.shape[:2]
    upsampled = F.interpolate(pixel_values.flatten(0, 1), size=(image_size, image_size), mode="bilinear",
                              align_corners=False).view(batch, frames, -1, image_size, image_size)
    model.eval()
    with torch.no_grad():
        agreement = float((model.policy(pixel_values).actions.argmax(-1) ==
                           scaled.policy(upsampled).actions.argmax(-1)).float().mean())
    int8_bits = scaled.prepare_int8_kernels(upsampled)
    timing = cpu_times(scaled, upsampled, repeats, int8=bool(int8_bits))
    costs = scaled.frame_costs()
    return {"base_width": base_width, "image_size": image_size, "action_agreement_with_testbed": agreement,
            "int8_bit_widths": int8_bits, "gmacs_per_frame": costs["frame_macs"] / 1e9,
            "policy_gmacs_per_frame": costs["policy_macs"] / 1e9, **timing}


def print_timing(timing: dict) -> None:
    """The table of `cpu_times` (ms per clip and the ratio to full precision) and where the saving comes from."""
    per_clip = timing["seconds_per_clip"]
    print(text_table([("path", "ms per clip", "vs full precision")] + [
        (name, f"{1000 * value:.2f}", f"{value / per_clip['full_precision']:.2f}")
        for name, value in per_clip.items()]))
    print(f"dynamic inference {timing['dynamic_vs_full']:.2f} of full precision; executed frames "
          f"{timing['executed_frame_share']:.0%}; saving against full precision from skips "
          f"{timing['saving_from_skips']:.0%}, from int8 kernels {timing['saving_from_int8_kernels']:.0%}; policy "
          f"share of dynamic time {timing['policy_share_of_dynamic']:.0%}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks videoiq", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the demo recipe as shipped (a few minutes)")
    parser.add_argument("--recipe", default=None,
                        help="the recipe to train (default: width16; demo with --quick)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra recipe overrides (key=value), applied after the benchmark's")
    parser.add_argument("--timing-repeats", type=int, default=None)
    parser.add_argument("--timing-clips", type=int, default=16)
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="keep the trained run here (default: a temporary folder)")
    parser.add_argument("--scale-width", type=int, default=64,
                        help="section 4: the recognition network's base width for the timing at scale (0: skip it)")
    parser.add_argument("--scale-image-size", type=int, default=112, help="section 4: its frame size")
    parser.add_argument("--scale-clips", type=int, default=8, help="section 4: clips per timed call")
    parser.add_argument("--from-run", type=Path, default=None,
                        help="benchmark this finished run (its recipe, overrides applied to the test data only)")
    args = parser.parse_args(argv)

    import torch

    from effhub.models.videoiq import VideoIQForVideoClassification
    from effhub.models.videoiq.recipe_videoiq import VideoIQRecipe
    from effhub.models.videoiq.training_videoiq import (
        VideoIQCollator,
        evaluate_mode,
        frame_kind_accuracy,
        load_datasets,
        make_processor,
        train,
    )
    from effhub.recipes import load_recipe, recipe_to_dict
    from effhub.training import RunOptions

    overrides = (QUICK_OVERRIDES if args.quick else FULL_OVERRIDES) + args.overrides
    output = args.output or RESULTS_DIR / ("videoiq-quick.json" if args.quick else "videoiq.json")
    started = time.perf_counter()
    if args.from_run is not None:
        from effhub.recipes import apply_overrides, build_dataclass
        from effhub.training import RunLayout

        info = RunLayout(args.from_run).read_run_info()
        recipe = build_dataclass(VideoIQRecipe, apply_overrides(info["recipe"], overrides))
        model = VideoIQForVideoClassification.from_pretrained(args.from_run).eval()
        train_seconds = None
    else:
        recipe_name = args.recipe or ("demo" if args.quick else "width16")
        recipe = load_recipe("videoiq", recipe_name, overrides)
        with tempfile.TemporaryDirectory() as workdir:
            run_dir = args.run_dir or Path(workdir) / "run"
            print(f"-- training the three stages into {run_dir}", flush=True)
            train(recipe, RunOptions(output_dir=run_dir, progress=False))
            train_seconds = time.perf_counter() - started
            model = VideoIQForVideoClassification.from_pretrained(run_dir).eval()
    train_set, test_set, _ = load_datasets(recipe)
    collate = VideoIQCollator(make_processor(recipe))
    batch_size = recipe.eval_batch_size
    config = model.config
    # the bit-widths of 8 or less on PyTorch's quantized CPU kernels (calibrated on training clips); the float
    # evaluations below step out of them, the int8 ones measure accuracy on them
    calibration = collate([train_set[index] for index in range(min(16, len(train_set)))])["pixel_values"]
    int8_bits = model.prepare_int8_kernels(calibration)
    # section 2 is timed first, right after loading: after the evaluations the same process runs the small calls of
    # dynamic inference slower (width-16 run, same clips: 0.55-0.57 of full precision before them and in fresh
    # processes, 0.59-0.61 after), a state of the benchmark's process, not of the model; both are recorded
    clips = [test_set[index] for index in range(min(args.timing_clips, len(test_set)))]
    pixel_values = collate(clips)["pixel_values"]
    timing_repeats = args.timing_repeats or (5 if args.quick else 15)
    print(f"-- timing on {len(clips)} test clips", flush=True)
    timing = cpu_times(model, pixel_values, timing_repeats, int8=bool(int8_bits))
    with model.float_simulation():
        print(f"-- test-bed check on {len(test_set)} test clips: each frame kind alone at each precision", flush=True)
        testbed = frame_kind_accuracy(model, test_set, collate, batch_size) if "frame_kind" in test_set.features \
            else {}
        print(f"-- evaluating on {len(test_set)} test clips", flush=True)
        evaluations = {"policy": evaluate_mode(model, test_set, collate, batch_size, "policy")}
        for bits in config.bit_width_family:
            evaluations[f"uniform {bits}-bit"] = evaluate_mode(model, test_set, collate, batch_size,
                                                               ("uniform", bits))
        evaluations["full precision"] = evaluate_mode(model, test_set, collate, batch_size, "full")
        evaluations["random policy (uniform actions)"] = evaluate_mode(model, test_set, collate, batch_size,
                                                                       ("random", recipe.seed))
        shares = [evaluations["policy"]["action_share"][name] for name in config.action_names]
        evaluations["random policy (policy's action shares)"] = evaluate_mode(
            model, test_set, collate, batch_size, ("sampled", recipe.seed + 1, shares))
    full = evaluations["full precision"]
    for value in evaluations.values():
        value["bitops_vs_full"] = value["bitops"] / full["bitops"]
        value["proxy_vs_full"] = value["gflops_proxy"] / full["gflops_proxy"]
        value["macs_vs_full"] = value["macs"] / full["macs"]

    policy = evaluations["policy"]
    uniform = [evaluations[f"uniform {bits}-bit"] for bits in config.bit_width_family]
    curves = {measure: above_curve(policy["top1"], policy[measure], [(u[measure], u["top1"]) for u in uniform])
              for measure in ("bitops", "gflops_proxy")}
    matched = evaluations["random policy (policy's action shares)"]

    int8_evaluations = {}
    if int8_bits:
        print(f"-- evaluating with int8 kernels for {int8_bits}-bit", flush=True)
        int8_evaluations["policy"] = evaluate_mode(model, test_set, collate, batch_size, "policy")
        for bits in int8_bits:
            int8_evaluations[f"uniform {bits}-bit"] = evaluate_mode(model, test_set, collate, batch_size,
                                                                    ("uniform", bits))
        for value in int8_evaluations.values():
            value["bitops_vs_full"] = value["bitops"] / full["bitops"]
            value["proxy_vs_full"] = value["gflops_proxy"] / full["gflops_proxy"]

    timing_after_evaluations = cpu_times(model, pixel_values, timing_repeats, int8=bool(int8_bits))
    deployed = int8_evaluations.get("policy", policy)  # the path the timing's dynamic inference ran
    at_scale = None
    if args.scale_width > 0:
        print(f"-- timing at scale: base width {args.scale_width}, {args.scale_image_size} px frames", flush=True)
        at_scale = scaled_timing(model, pixel_values[:args.scale_clips], args.scale_width, args.scale_image_size,
                                 args.timing_repeats or (3 if args.quick else 5))

    policy_costs = model.policy_video_costs()
    policy_macs, policy_bitops = policy_costs["macs"], policy_costs["bitops"]
    policy_cost = {"bit_width": config.policy_bit_width, "macs": policy_macs, "bitops": policy_bitops,
                   "macs_vs_full": policy_macs / full["macs"], "bitops_vs_full": policy_bitops / full["bitops"],
                   "share_of_policy_bitops": policy_bitops / policy["bitops"]}

    gap = policy["top1"] - full["top1"]
    targets = {
        "policy_above_uniform_curve_bitops": curves["bitops"]["above"],
        "policy_above_uniform_curve_proxy": curves["gflops_proxy"]["above"],
        "policy_within_0.5_points_of_full_precision_at_half_its_bitops":
            gap >= -0.005 and policy["bitops_vs_full"] <= 0.5,
        "cpu_time_at_least_40pct_less_at_matched_accuracy":
            timing["dynamic_vs_full"] <= 0.6 and deployed["top1"] - full["top1"] >= -0.005,
        "policy_above_random_policy_with_its_action_shares": policy["top1"] > matched["top1"],
    }
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared), {torch.get_num_threads()} torch "
                   f"threads, {platform.system()}",
        "quick": args.quick, "recipe": None if args.from_run is not None else recipe_name, "overrides": overrides,
        "seed": recipe.seed,
        "from_run": args.from_run is not None, "recipe_used": recipe_to_dict(recipe),
        "test_clips": len(test_set), "train_seconds": train_seconds,
        "testbed_frame_kind_top1": testbed, "int8_bit_widths": int8_bits,
        "int8_evaluations": int8_evaluations, "evaluations": evaluations, "uniform_curve": curves,
        "policy_minus_full_top1": gap, "policy_minus_matched_random_top1": policy["top1"] - matched["top1"],
        "timing": timing, "timing_after_evaluations": timing_after_evaluations, "policy_network_cost": policy_cost,
        "timing_at_scale": at_scale,
        "targets": targets, "seconds": time.perf_counter() - started,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    from effhub.atomic import atomic_write_json

    atomic_write_json(output, json.loads(json.dumps(result)))

    if testbed:
        names = [name for name in next(iter(testbed.values())) if name != "clips"]
        print("\n(0) test-bed: top-1 from the frames of one kind alone, at each precision")
        print(text_table([("frame kind", "clips", *names)] + [
            (kind, str(row["clips"]), *(f"{row[name]:.3f}" for name in names)) for kind, row in testbed.items()]))
    print(f"\n(1) accuracy against average cost per video, {len(test_set)} test clips; ratios against full precision")
    print(text_table([("configuration", "top-1", "mAP", "GBitOPs", "BitOPs/FP", "GFLOPs proxy", "proxy/FP")] + [
        (name, f"{v['top1']:.3f}", f"{v['mAP']:.3f}", f"{v['bitops'] / 1e9:.3f}", f"{v['bitops_vs_full']:.3f}",
         f"{v['gflops_proxy']:.4f}", f"{v['proxy_vs_full']:.3f}") for name, v in evaluations.items()]))
    print("policy actions: " + ", ".join(f"{name} {share:.0%}" for name, share in policy["action_share"].items()))
    if "action_share_by_frame_kind" in policy:
        print(text_table([("frame kind", *config.action_names)] + [
            (kind, *(f"{share[name]:.0%}" for name in config.action_names))
            for kind, share in policy["action_share_by_frame_kind"].items()]))
    for measure, curve in curves.items():
        print(f"uniform curve at the policy's {measure}: top-1 {curve['reference_top1']:.3f}"
              f"{' (below the cheapest uniform point: compared with it)' if curve['top1'] is None else ''}; "
              f"policy {policy['top1']:.3f} ({curve['margin']:+.3f})")
    print(f"policy network per video ({config.policy_precision}; counted in the policy's row): "
          f"{policy_cost['bitops'] / 1e9:.3f} GBitOPs = {policy_cost['bitops_vs_full']:.3f} of full precision's "
          f"BitOPs, {policy_cost['share_of_policy_bitops']:.0%} of the policy row's")
    for name, value in int8_evaluations.items():
        print(f"int8 kernels, {name}: top-1 {value['top1']:.3f} (float simulation "
              f"{evaluations[name]['top1']:.3f})")
    print(f"\n(2, 3) CPU ms per clip (batch of {timing['clips_per_call']}, median of {timing['repeats']}, load "
          f"{timing['load_average'][0]:.1f})")
    print_timing(timing)
    print(f"the same after the evaluations, in this process: dynamic inference "
          f"{timing_after_evaluations['dynamic_vs_full']:.2f} of full precision")
    if at_scale is not None:
        print(f"\n(4) the same at base width {at_scale['base_width']}, {at_scale['image_size']} px (random weights: "
              f"time only; actions agree with the test-bed run on {at_scale['action_agreement_with_testbed']:.0%} "
              f"of the frames; {at_scale['clips_per_call']} clips per call, median of {at_scale['repeats']})")
        print_timing(at_scale)
    print("\ntargets: " + ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in targets.items()))
    print(f"written {output} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
