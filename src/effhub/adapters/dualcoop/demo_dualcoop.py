"""`effhub demo dualcoop`: a DualCoOp adapter end to end on the shipped CLIP teacher and the caption world.

Trains the demo recipe at a 10% label ratio, prints its test figures against zero-shot CLIP with hand-written
prompts, publishes the teacher and the adapter to a local hub, reloads the adapter by repo id with
`PeftModel.from_pretrained` in a new process and checks that its outputs equal the trained model's. Exits non-zero
when they differ.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

DEMO_REPO_ID = "effhub/dualcoop-demo-p10"
DEMO_LABEL_RATIO = 0.1

RELOAD_SCRIPT = """
import sys, torch, effhub
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import CLIPModel
base_repo, adapter_repo, inputs, outputs = sys.argv[1:5]
model = PeftModel.from_pretrained(CLIPModel.from_pretrained(base_repo), adapter_repo).eval()
with torch.no_grad():
    save_file({"logits": model(pixel_values=load_file(inputs)["pixel_values"]).logits.contiguous()}, outputs)
print(f"reloaded {adapter_repo} on {base_repo} with PeftModel.from_pretrained")
"""


def run_demo(options) -> int:
    """Run the DualCoOp demo into `options.output_dir` (`effhub.training.DemoOptions`); returns the exit status."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file, save_file

    from ...hub.publish import push_folder
    from ...hub.server import LocalHubServer
    from ...models.clip_teacher.weights import base_teacher_path
    from ...recipes import load_recipe
    from ...training import RunOptions
    from .card_dualcoop import SHIPPED_TEACHER_REPO
    from .training_dualcoop import MultiLabelImages, build_data, collate, load_base_clip, train

    output_dir = Path(options.output_dir) / "dualcoop"
    run_dir = output_dir / "run"
    recipe = load_recipe("dualcoop", "demo", options.overrides)
    print(f"[1/4] training DualCoOp ({recipe.train.steps} steps, {DEMO_LABEL_RATIO:.0%} of the labels) on the "
          f"shipped CLIP teacher into {run_dir}")
    train(recipe, RunOptions(output_dir=run_dir, overwrite=True, extra={"label_ratio": DEMO_LABEL_RATIO}))
    model = PeftModel.from_pretrained(load_base_clip(recipe.model.base_model), str(run_dir)).eval()
    import json

    scores = json.loads((run_dir / "eval_results.json").read_text())["extra"]["scores"]["test"]
    top_k = scores["top_k"]
    print(f"      test mAP {scores['map']:.1f}, OF1@{top_k} {scores[f'of1_top{top_k}']:.1f} "
          f"(card: {run_dir / 'README.md'}); measured figures and baselines: docs/dualcoop.md")
    data, _ = build_data(recipe)
    test = MultiLabelImages(data.test_images[:4], data.test_targets[:4], recipe.data.eval_image_size)
    pixel_values = collate([test[i] for i in range(len(test))])["pixel_values"]
    with torch.no_grad():
        expected = model(pixel_values=pixel_values).logits
    with LocalHubServer(output_dir / "hub") as hub, tempfile.TemporaryDirectory() as workdir:
        print(f"[2/4] local hub at {hub.url}; pushing the teacher to {SHIPPED_TEACHER_REPO} and the adapter to "
              f"{DEMO_REPO_ID}")
        push_folder(base_teacher_path(), SHIPPED_TEACHER_REPO, endpoint=hub.url)
        push_folder(run_dir, DEMO_REPO_ID, endpoint=hub.url)
        print("[3/4] reloading the adapter by repo id in a new process")
        inputs, outputs = Path(workdir) / "inputs.safetensors", Path(workdir) / "outputs.safetensors"
        save_file({"pixel_values": pixel_values.contiguous()}, str(inputs))
        environment = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(Path(workdir) / "hf-home"),
                       "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        completed = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, SHIPPED_TEACHER_REPO, DEMO_REPO_ID,
                                    str(inputs), str(outputs)], env=environment, capture_output=True, text=True,
                                   timeout=600)
        if completed.returncode != 0:
            print(f"FAILED: the new process could not reload the adapter:\n{completed.stderr[-3000:]}")
            return 1
        print("      " + completed.stdout.strip())
        reloaded = load_file(str(outputs))["logits"]
    print("[4/4] comparing outputs")
    if not torch.equal(reloaded, expected):
        print(f"FAILED: the reloaded adapter's logits differ by {(reloaded - expected).abs().max():.3g}")
        return 1
    print("OK: the adapter reloaded by repo id reproduces the trained model's logits exactly")
    return 0


__all__ = ["run_demo", "DEMO_REPO_ID"]
