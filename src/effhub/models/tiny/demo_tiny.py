"""`effhub demo tiny`: the infrastructure end to end on the tiny classifier.

Train under Accelerate, evaluate, write the card, start the local hub, push, reload the model by repo id in a new
process, compare its outputs with the trained model's, and print the hub's model table. Exits non-zero when the
reloaded model's outputs differ.
"""

from __future__ import annotations

import json
from pathlib import Path

DEMO_REPO_ID = "effhub/tiny-demo"


def run_demo(options) -> int:
    """Run the tiny demo into `options.output_dir` (`effhub.training.DemoOptions`); returns the exit status."""
    from ...recipes import load_recipe
    from ...training import RunOptions
    from ...training.reload import publish_and_reload
    from .modeling_tiny import EffhubTinyForImageClassification
    from .training_tiny import build_datasets, train

    output_dir = Path(options.output_dir) / "tiny"
    run_dir = output_dir / "run"
    recipe = load_recipe("tiny", "demo", options.overrides)
    print(f"[1/4] training the tiny classifier ({recipe.train.steps} steps) into {run_dir}")
    train(recipe, RunOptions(output_dir=run_dir))
    evaluation = json.loads((run_dir / "eval_results.json").read_text())
    accuracy = evaluation["results"][0]["metric_value"]
    print(f"      test accuracy {accuracy:.3f} (chance {1 / 4:.2f}); card: {run_dir / 'README.md'}")

    model = EffhubTinyForImageClassification.from_pretrained(run_dir).eval()
    _, test_split = build_datasets(recipe)
    pixel_values = test_split[:16]["pixel_values"]
    return publish_and_reload(run_dir, DEMO_REPO_ID, output_dir / "hub", model, pixel_values)
