"""Train a clip-teacher recipe with `effhub train`'s own code and keep the transformers folder of the result.

The run goes through the package's `train` (the run layer, every stage of the recipe) into a temporary run folder;
the model, processor and tokenizer files are copied into `output_dir` with `recipe.json` and `training.json` (the
wall time of the whole run, of each stage, and the logged losses and temperatures).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

# run-folder files that are not part of a shipped model folder
RUN_ONLY = {"run_info.json", "eval_results.json", "README.md", "card_spec.json"}


def stage_times(metrics: list[dict]) -> dict:
    """Seconds from the first to the last logged step of each stage's phases (`<stage phase>/...` keys)."""
    spans: dict[str, list[float]] = {}
    for record in metrics:
        for key in record:
            if key.endswith("/loss"):
                spans.setdefault(key.split("/", 1)[0], []).append(record["time"])
    return {phase: round(max(times) - min(times), 1) for phase, times in spans.items()}


def train_teacher(recipe, output_dir, threads: int | None = None, log_every: int = 50, run_dir=None) -> dict:
    """Train `recipe` (a `CLIPTeacherRecipe`) and save the teacher into `output_dir`; returns the training record.

    Args:
        run_dir (`str` or `Path`, *optional*): keep the run folder there (resumed when it holds an unfinished run of
            the same recipe); default: a temporary folder, removed afterwards.
    """
    import torch

    from effhub.models.clip_teacher.training_clip_teacher import train
    from effhub.recipes import recipe_to_dict
    from effhub.training import RunOptions, read_metrics_log

    if threads:
        torch.set_num_threads(threads)
    output_dir = Path(output_dir)
    with tempfile.TemporaryDirectory(prefix="clip-teacher-run-") as scratch:
        started = time.time()
        folder = Path(run_dir) if run_dir else Path(scratch) / "run"
        resume = (folder / "run_info.json").is_file()
        run_dir = Path(train(recipe, RunOptions(output_dir=folder, progress=False, resume=resume,
                                                checkpoint_every=200 if run_dir else 0)))
        seconds = time.time() - started
        metrics = read_metrics_log(run_dir / "logs" / "metrics.jsonl")
        output_dir.mkdir(parents=True, exist_ok=True)
        for path in run_dir.iterdir():
            if path.is_file() and path.name not in RUN_ONLY:
                shutil.copy2(path, output_dir / path.name)
    model_params = json.loads((output_dir / "config.json").read_text())
    record = {
        "run_seconds": round(seconds, 1),
        "phase_seconds": stage_times(metrics),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "vision_image_size": model_params["vision_config"]["image_size"],
        "log": [{k: v for k, v in m.items() if k != "time"} for m in metrics
                if any(key.endswith("/loss") for key in m) and m.get("step", 0) % log_every == 0],
    }
    (output_dir / "recipe.json").write_text(json.dumps(recipe_to_dict(recipe), indent=2) + "\n")
    (output_dir / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
