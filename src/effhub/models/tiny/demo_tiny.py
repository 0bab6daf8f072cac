"""`effhub demo tiny`: the infrastructure end to end on the tiny classifier.

Train under Accelerate, evaluate, write the card, start the local hub, push, reload the model by repo id in a new
process, compare its outputs with the trained model's, and print the hub's model table. Exits non-zero when the
reloaded model's outputs differ.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

DEMO_REPO_ID = "effhub/tiny-demo"
OUTPUT_TOLERANCE = 1e-5


def run_demo(args: argparse.Namespace) -> int:
    """Run the tiny demo into `args.output_dir`; returns the process exit status."""
    import torch

    from ...hub.browse import browse_models, format_table
    from ...hub.publish import push_folder
    from ...hub.reload import max_output_difference, output_tensors, reload_in_new_process
    from ...hub.server import LocalHubServer
    from ...recipes import load_recipe
    from .modeling_tiny import EffhubTinyForImageClassification
    from .training_tiny import build_datasets, train

    output_dir = Path(args.output_dir) / "tiny"
    run_dir = output_dir / "run"
    recipe = load_recipe("tiny", "demo", getattr(args, "overrides", None))
    print(f"[1/4] training the tiny classifier ({recipe.train.steps} steps) into {run_dir}")
    train(recipe, argparse.Namespace(output_dir=run_dir, seed=None, no_progress=False))
    evaluation = json.loads((run_dir / "eval_results.json").read_text())
    accuracy = evaluation["results"][0]["metric_value"]
    print(f"      test accuracy {accuracy:.3f} (chance {1 / 4:.2f}); card: {run_dir / 'README.md'}")

    model = EffhubTinyForImageClassification.from_pretrained(run_dir).eval()
    _, test_split = build_datasets(recipe)
    pixel_values = test_split[:16]["pixel_values"]
    with torch.no_grad():
        expected = output_tensors(model(pixel_values=pixel_values).logits)

    with LocalHubServer(output_dir / "hub") as hub, tempfile.TemporaryDirectory() as workdir:
        print(f"[2/4] local hub at {hub.url}; pushing {run_dir} to {DEMO_REPO_ID}")
        push_folder(run_dir, DEMO_REPO_ID, endpoint=hub.url)
        print("[3/4] reloading by repo id in a new process")
        reloaded = reload_in_new_process(DEMO_REPO_ID, hub.url, pixel_values, Path(workdir))
        difference = max_output_difference(expected, reloaded)
        print("[4/4] models on the local hub:")
        print(format_table(browse_models(endpoint=hub.url)))
    if difference > OUTPUT_TOLERANCE:
        print(f"FAILED: the reloaded model's outputs differ by {difference:.3g} (> {OUTPUT_TOLERANCE})")
        return 1
    print(f"OK: the reloaded model's outputs match (max abs difference {difference:.3g})")
    return 0
