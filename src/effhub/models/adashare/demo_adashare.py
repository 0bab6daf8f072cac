"""`effhub demo adashare` (what `make demo` runs): a small AdaShare end to end on the generated scenes.

Warm-up, policy learning and re-training of the most likely architecture; evaluation on the test split; the card; a
push to the local hub and a reload by repo id in a new process. Prints the re-trained AdaShare against the warm-up
(hard-sharing) model and the fraction of multiply-adds each task executes; exits non-zero when the reloaded model's
outputs differ from the trained model's.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...multitask import TASK_TYPE_METRICS
from ...tables import text_table

DEMO_REPO_ID = "effhub/adashare-demo"


def comparison_table(config, adashare: dict, warmup: dict, fractions: dict) -> str:
    """Plain-text table: per task, the warm-up (hard sharing) and AdaShare test metric and the executed fraction."""
    rows = [("task", "metric", "hard sharing (warm-up)", "AdaShare (re-trained)", "better", "MACs executed")]
    for task in config.task_names:
        kind = TASK_TYPE_METRICS[config.task_types[task]]
        metric, lower = kind.headline, kind.lower_is_better
        ours, theirs = adashare[task][metric], warmup[task][metric]
        better = "AdaShare" if (ours < theirs if lower else ours > theirs) else "hard sharing"
        rows.append((task, metric + (" (lower is better)" if lower else ""), f"{theirs:.4f}", f"{ours:.4f}", better,
                     f"{fractions[task]:.1%}"))
    return text_table(rows)


def run_demo(options) -> int:
    """Run the AdaShare demo into `options.output_dir` (`effhub.training.DemoOptions`); returns the exit status."""
    from ...recipes import load_recipe
    from ...training import RunOptions
    from ...training.reload import publish_and_reload
    from .modeling_adashare import AdaShareModel
    from .training_adashare import load_datasets, make_collator, train

    output_dir = Path(options.output_dir) / "adashare"
    run_dir = output_dir / "run"
    recipe = load_recipe("adashare", "demo", options.overrides)
    print(f"[1/4] training AdaShare on the generated scenes into {run_dir}: warm-up {recipe.warmup_steps} steps, "
          f"policy learning {recipe.policy_epochs} epochs, re-training {recipe.retrain_steps} steps")
    train(recipe, RunOptions(output_dir=run_dir))
    evaluation = json.loads((run_dir / "eval_results.json").read_text())
    extra = evaluation["extra"]
    model = AdaShareModel.from_pretrained(run_dir).eval()
    print(f"      test split, card: {run_dir / 'README.md'}")
    print(comparison_table(model.config, extra["scores"], extra["warmup_hard_sharing"], extra["executed_fraction"]))
    if "delta_t" in extra:
        print(f"      Delta_T against single-task models trained with the same steps (higher is better): "
              f"AdaShare {extra['delta_t']:+.2f}%, hard sharing (warm-up) {extra['delta_t_warmup_hard_sharing']:+.2f}%")

    _, test_set = load_datasets(recipe)
    collate = make_collator(recipe, model.config.task_names, train=False)
    pixel_values = collate([test_set[index] for index in range(4)])["pixel_values"]
    return publish_and_reload(run_dir, DEMO_REPO_ID, output_dir / "hub", model, pixel_values)


__all__ = ["run_demo", "comparison_table"]
