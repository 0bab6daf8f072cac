"""Reload a model by repo id in a fresh Python process and return its outputs: the demos' proof that a pushed model
is complete (config, weights, registration) without anything the pushing process holds in memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Runs in a new interpreter: only the Hub endpoint, the repo id and the saved inputs connect it to the caller.
RELOAD_SCRIPT = """
import sys, torch, effhub
from safetensors.torch import load_file, save_file
from transformers import AutoModel
repo_id, inputs_path, outputs_path = sys.argv[1:4]
model = AutoModel.from_pretrained(repo_id).eval()
with torch.no_grad():
    logits = model(pixel_values=load_file(inputs_path)["pixel_values"]).logits
if isinstance(logits, dict):
    tensors = {f"logits/{name}": value.contiguous() for name, value in logits.items()}
else:
    tensors = {"logits": logits.contiguous()}
save_file(tensors, outputs_path)
print(f"reloaded {type(model).__name__} from {repo_id}")
"""


def output_tensors(logits) -> dict:
    """The `{name: tensor}` form `reload_in_new_process` returns, for a tensor or a `{task: tensor}` dict of logits."""
    if isinstance(logits, dict):
        return {f"logits/{name}": value for name, value in logits.items()}
    return {"logits": logits}


def reload_in_new_process(repo_id: str, endpoint: str, pixel_values, workdir: str | os.PathLike) -> dict:
    """Load `repo_id` with `AutoModel` from `endpoint` in a new process with an empty cache; return its logits.

    Args:
        repo_id (`str`): the model repository.
        endpoint (`str`): the Hub URL (e.g. the local hub's `.url`).
        pixel_values (`torch.Tensor`): the inputs to run.
        workdir (`str` or `os.PathLike`): a scratch folder (inputs, outputs and the new process's `HF_HOME`).

    Returns:
        `dict[str, torch.Tensor]`: `{"logits": tensor}`, or `{"logits/<task>": tensor}` for per-task logits.
    """
    from safetensors.torch import load_file, save_file

    workdir = Path(workdir)
    inputs_path, outputs_path = workdir / "inputs.safetensors", workdir / "outputs.safetensors"
    save_file({"pixel_values": pixel_values.contiguous()}, str(inputs_path))
    environment = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(workdir / "hf-home"),
                   "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "0"}
    completed = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, repo_id, str(inputs_path), str(outputs_path)],
        env=environment, capture_output=True, text=True, timeout=600,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"reloading {repo_id} in a new process failed:\n{completed.stderr[-3000:]}")
    print(completed.stdout.strip())
    return load_file(str(outputs_path))


def max_output_difference(expected: dict, reloaded: dict) -> float:
    """Largest absolute difference between two `{name: tensor}` outputs (infinite when their names differ)."""
    if set(expected) != set(reloaded):
        return float("inf")
    return max((expected[name] - reloaded[name]).abs().max().item() for name in expected)





OUTPUT_TOLERANCE = 1e-5


def publish_and_reload(run_dir, repo_id: str, hub_root, model, pixel_values) -> int:
    """The demos' last three steps: push `run_dir` to a local hub at `hub_root`, reload `repo_id` in a new process,
    compare its logits on `pixel_values` with `model`'s, and print the hub's model table.

    Returns the exit status: 0 when the outputs match within `OUTPUT_TOLERANCE`, 1 otherwise.
    """
    import tempfile

    import torch

    from ..hub.browse import browse_models, format_table
    from ..hub.publish import push_folder
    from ..hub.server import LocalHubServer

    with torch.no_grad():
        expected = output_tensors(model(pixel_values=pixel_values).logits)
    with LocalHubServer(hub_root) as hub, tempfile.TemporaryDirectory() as workdir:
        print(f"[2/4] local hub at {hub.url}; pushing {run_dir} to {repo_id}")
        push_folder(run_dir, repo_id, endpoint=hub.url)
        print("[3/4] reloading by repo id in a new process")
        difference = max_output_difference(expected, reload_in_new_process(repo_id, hub.url, pixel_values, workdir))
        print("[4/4] models on the local hub:")
        print(format_table(browse_models(endpoint=hub.url)))
    if difference > OUTPUT_TOLERANCE:
        print(f"FAILED: the reloaded model's outputs differ by {difference:.3g} (> {OUTPUT_TOLERANCE})")
        return 1
    print(f"OK: the reloaded model's outputs match (max abs difference {difference:.3g})")
    return 0
__all__ = ["reload_in_new_process", "output_tensors", "max_output_difference", "publish_and_reload"]
