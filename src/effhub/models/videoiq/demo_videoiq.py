"""`effhub demo videoiq`: VideoIQ end to end on generated clips.

All three stages of the demo recipe (full precision and policy backbone, any-precision, policy), evaluation of the
dynamic policy against every uniform precision, full precision and a random policy (top-1, BitOPs, GFLOPs proxy);
the card; a push to the local hub and a reload by repo id in a new process. Exits non-zero when the reloaded model's
outputs differ from the trained model's.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...tables import text_table

DEMO_REPO_ID = "effhub/videoiq-demo"


def comparison_table(rows: list[dict]) -> str:
    """Plain-text table of `card_videoiq.comparison_rows`."""
    header = ("configuration", "top-1", "mAP", "GBitOPs/video", "BitOPs vs FP", "GFLOPs proxy", "proxy vs FP")
    lines = [header] + [(row["name"], f"{row['top1']:.3f}", f"{row['mAP']:.3f}", f"{row['gbitops']:.3f}",
                         f"{row['bitops_ratio']:.3f}", f"{row['gflops_proxy']:.4f}", f"{row['proxy_ratio']:.3f}")
                        for row in rows]
    return text_table(lines)


def run_demo(options) -> int:
    """Run the VideoIQ demo into `options.output_dir` (`effhub.training.DemoOptions`); returns the exit status."""
    import time

    from ...recipes import load_recipe
    from ...training import RunOptions
    from ...training.reload import publish_and_reload
    from .modeling_videoiq import VideoIQForVideoClassification
    from .training_videoiq import VideoIQCollator, load_datasets, make_processor, train

    output_dir = Path(options.output_dir) / "videoiq"
    run_dir = output_dir / "run"
    recipe = load_recipe("videoiq", "demo", options.overrides)
    print(f"[1/4] training VideoIQ on generated clips into {run_dir}: full precision {recipe.full_precision.steps} "
          f"steps + policy backbone {recipe.policy_backbone.steps}, any-precision {recipe.any_precision.steps}, "
          f"policy {recipe.policy.steps}")
    start = time.perf_counter()
    train(recipe, RunOptions(output_dir=run_dir))
    print(f"      trained and evaluated in {time.perf_counter() - start:.0f} s; card: {run_dir / 'README.md'}")
    evaluation = json.loads((run_dir / "eval_results.json").read_text())
    print(comparison_table(evaluation["extra"]["comparison"]))
    shares = evaluation["extra"]["evaluations"]["policy"]["action_share"]
    print("      policy actions: " + ", ".join(f"{name} {share:.0%}" for name, share in shares.items()))
    model = VideoIQForVideoClassification.from_pretrained(run_dir).eval()
    _, test_set, _ = load_datasets(recipe)
    pixel_values = VideoIQCollator(make_processor(recipe))([test_set[index] for index in range(4)])["pixel_values"]
    return publish_and_reload(run_dir, DEMO_REPO_ID, output_dir / "hub", model, pixel_values)


__all__ = ["comparison_table", "run_demo"]
