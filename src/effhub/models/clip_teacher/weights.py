"""The base CLIP teacher shipped inside the package: a `transformers` model folder, loaded offline.

The folder (`shipped/base/`) holds the model (safetensors), the processor and tokenizer files, the recipe it was
trained with (`recipe.json`, the shipped `base` recipe), its training record (`training.json`) and the figures measured
on it (`figures.json`); a test re-evaluates the weights and finds those figures. DualCoOp and DIME-FM demos start
from it, so that a fresh clone needs neither a network nor a teacher training run.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import CheckpointError

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
BASE_TEACHER = "base"
FIGURES_FILE = "figures.json"


def base_teacher_path(name: str = BASE_TEACHER) -> Path:
    """The folder of a shipped teacher (a plain `CLIPModel` folder: `CLIPModel.from_pretrained(path)` loads it)."""
    folder = SHIPPED_DIR / name
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise CheckpointError(
            f"the shipped clip-teacher '{name}' is missing from '{folder}'",
            "reinstall effhub (the weights are package data), or train one: effhub train clip-teacher --recipe base",
        )
    return folder


def load_base_teacher(name: str = BASE_TEACHER):
    """`(CLIPModel, CLIPProcessor)` of a shipped teacher, in eval mode."""
    from transformers import AutoProcessor, CLIPModel

    from ..loading import load_pretrained

    folder = base_teacher_path(name)
    return load_pretrained(CLIPModel, folder).eval(), AutoProcessor.from_pretrained(folder)


def recorded_figures(name: str = BASE_TEACHER) -> dict:
    """The figures measured on a shipped teacher when it was trained (`figures.json`)."""
    path = base_teacher_path(name) / FIGURES_FILE
    if not path.is_file():
        raise CheckpointError(f"no {FIGURES_FILE} beside the shipped teacher '{name}'",
                              "re-run benchmarks/clip_teacher/ship.py to measure it")
    return json.loads(path.read_text())


def export_shipped_teacher(output_dir: str | Path, name: str = BASE_TEACHER) -> Path:
    """Copy a shipped teacher into `output_dir` as a publishable model folder, measured now: its evaluation
    (`eval_results.json`), its card (`README.md`, as `effhub train clip-teacher` writes it) and a `run_info.json`
    naming its recipe, so `effhub eval <output_dir>` re-measures it. The model zoo publishes the teacher that
    DualCoOp adapters name as their base model this way. Returns the folder.
    """
    import shutil

    from ...atomic import atomic_write_json
    from ...recipes import build_dataclass, recipe_to_dict
    from ...training import RUN_INFO_FILE
    from .evaluation import evaluate_clip
    from .training_clip_teacher import CLIPTeacherRecipe, build_world, write_results_and_card

    folder = base_teacher_path(name)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if path.is_file():
            shutil.copyfile(path, output_dir / path.name)
    recipe = build_dataclass(CLIPTeacherRecipe, json.loads((folder / "recipe.json").read_text()))
    model, processor = load_base_teacher(name)
    world = build_world(recipe)
    metrics = evaluate_clip(model, processor.tokenizer, world, recipe)
    atomic_write_json(output_dir / RUN_INFO_FILE, {"method": "clip-teacher", "seed": recipe.seed,
                                                   "recipe": recipe_to_dict(recipe), "shipped": name})
    write_results_and_card(output_dir, recipe, metrics, model, world)
    return output_dir


__all__ = ["SHIPPED_DIR", "BASE_TEACHER", "base_teacher_path", "load_base_teacher", "recorded_figures",
           "export_shipped_teacher"]
