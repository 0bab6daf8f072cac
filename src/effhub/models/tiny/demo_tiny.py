"""`effhub demo tiny`: the infrastructure end to end on the tiny classifier.

Train under Accelerate, evaluate, write the card, start the local hub, push, reload the model by repo id in a new
process, compare its outputs with the trained model's, and print the hub's model table. Exits non-zero when the
reloaded model's outputs differ.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DEMO_REPO_ID = "effhub/tiny-demo"
OUTPUT_TOLERANCE = 1e-5

# Runs in a fresh interpreter: only the Hub endpoint and the saved inputs connect it to the demo.
RELOAD_SCRIPT = """
import sys, torch, effhub
from safetensors.torch import load_file, save_file
from transformers import AutoModel
repo_id, inputs_path, outputs_path = sys.argv[1:4]
model = AutoModel.from_pretrained(repo_id).eval()
with torch.no_grad():
    logits = model(pixel_values=load_file(inputs_path)["pixel_values"]).logits
save_file({"logits": logits.contiguous()}, outputs_path)
print(f"reloaded {type(model).__name__} from {repo_id}")
"""


def reload_in_new_process(repo_id: str, endpoint: str, pixel_values, workdir: Path):
    """Load `repo_id` from `endpoint` in a new Python process with an empty cache and return its logits."""
    from safetensors.torch import load_file, save_file

    inputs_path, outputs_path = workdir / "inputs.safetensors", workdir / "outputs.safetensors"
    save_file({"pixel_values": pixel_values.contiguous()}, str(inputs_path))
    environment = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(workdir / "hf-home"),
                   "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "0"}
    completed = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, repo_id, str(inputs_path), str(outputs_path)],
        env=environment, capture_output=True, text=True, timeout=300,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"reloading {repo_id} failed:\n{completed.stderr[-3000:]}")
    print(completed.stdout.strip())
    return load_file(str(outputs_path))["logits"]


def run_demo(args: argparse.Namespace) -> int:
    """Run the tiny demo into `args.output_dir`; returns the process exit status."""
    import torch

    from ...hub.browse import browse_models, format_table
    from ...hub.publish import push_folder
    from ...hub.server import LocalHubServer
    from ...recipes import load_recipe
    from .modeling_tiny import EffhubTinyForImageClassification
    from .training_tiny import build_datasets, train

    output_dir = Path(args.output_dir) / "tiny"
    run_dir = output_dir / "run"
    recipe = load_recipe("tiny", "demo")
    print(f"[1/4] training the tiny classifier ({recipe.train.steps} steps) into {run_dir}")
    train(recipe, argparse.Namespace(output_dir=run_dir, seed=None, no_progress=False))
    evaluation = json.loads((run_dir / "eval_results.json").read_text())
    accuracy = evaluation["results"][0]["metric_value"]
    print(f"      test accuracy {accuracy:.3f} (chance {1 / 4:.2f}); card: {run_dir / 'README.md'}")

    model = EffhubTinyForImageClassification.from_pretrained(run_dir).eval()
    _, test_split = build_datasets(recipe)
    pixel_values = test_split[:16]["pixel_values"]
    with torch.no_grad():
        expected = model(pixel_values=pixel_values).logits

    with LocalHubServer(output_dir / "hub") as hub, tempfile.TemporaryDirectory() as workdir:
        print(f"[2/4] local hub at {hub.url}; pushing {run_dir} to {DEMO_REPO_ID}")
        push_folder(run_dir, DEMO_REPO_ID, endpoint=hub.url)
        print("[3/4] reloading by repo id in a new process")
        reloaded = reload_in_new_process(DEMO_REPO_ID, hub.url, pixel_values, Path(workdir))
        difference = (reloaded - expected).abs().max().item()
        print("[4/4] models on the local hub:")
        print(format_table(browse_models(endpoint=hub.url)))
    if difference > OUTPUT_TOLERANCE:
        print(f"FAILED: the reloaded model's outputs differ by {difference:.3g} (> {OUTPUT_TOLERANCE})")
        return 1
    print(f"OK: the reloaded model's outputs match (max abs difference {difference:.3g})")
    return 0
