"""`python -m benchmarks.clip_teacher.ship`: train the `base` recipe and ship it inside the package.

Trains the shipped `base` recipe in this process with the package's own training code (`effhub train clip-teacher`'s
run, every stage; `benchmarks.clip_teacher.teacher.train_teacher`), writes the folder
`effhub/models/clip_teacher/shipped/base/` (model.safetensors, processor and tokenizer files, recipe.json,
training.json) and records the figures that `tests/models/clip_teacher/test_shipped_teacher.py` re-evaluates
(`figures.json`: the recipe's own zero-shot and retrieval evaluation). The gates are measured by `run.py`.

`--tagging-from FOLDER` runs only the recipe's last stage, `tagging:`, on the teacher in FOLDER (e.g. the one shipped
before, which the same recipe's earlier stages made): `tagging.start_from` is set for the run, `recipe.json` records
the recipe without it, and `training.json` records the start weights (their SHA-256 and their own `training.json`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path


def record_figures(folder: Path) -> dict:
    """Evaluate a teacher folder with the recipe's own evaluation and write `figures.json` beside it."""
    from transformers import AutoTokenizer, CLIPModel

    from effhub.models.clip_teacher.evaluation import evaluate_clip
    from effhub.models.clip_teacher.training_clip_teacher import CLIPTeacherRecipe, build_world
    from effhub.models.clip_teacher.weights import FIGURES_FILE
    from effhub.recipes import build_dataclass

    recipe = build_dataclass(CLIPTeacherRecipe, json.loads((folder / "recipe.json").read_text()))
    model = CLIPModel.from_pretrained(folder).eval()
    metrics = evaluate_clip(model, AutoTokenizer.from_pretrained(folder), build_world(recipe), recipe)
    figures = {"world_version": recipe.world.version, "world_seed": recipe.world.seed, **metrics}
    (folder / FIGURES_FILE).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def tagging_start(folder: Path) -> dict:
    """A copy of the teacher in `folder` (in a temporary folder that lives as long as the process) and its record:
    `{"folder", "model_sha256", "training"}` (`training`: the folder's own `training.json`, if any)."""
    import atexit
    import hashlib

    from effhub.errors import ConfigError

    if not (folder / "model.safetensors").is_file():
        raise ConfigError(f"--tagging-from {folder} holds no model.safetensors",
                          "name a teacher folder, e.g. src/effhub/models/clip_teacher/shipped/base")
    copy = Path(tempfile.mkdtemp(prefix="clip-teacher-start-"))
    atexit.register(shutil.rmtree, copy, True)
    for path in folder.iterdir():
        if path.is_file():
            shutil.copy2(path, copy / path.name)
    training = copy / "training.json"
    return {"folder": str(copy),
            "model_sha256": hashlib.sha256((copy / "model.safetensors").read_bytes()).hexdigest(),
            "training": json.loads(training.read_text()) if training.is_file() else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="base")
    parser.add_argument("--set", action="append", default=[], help="recipe override (for trials; never shipped)")
    parser.add_argument("--output", help="folder (default: the package's shipped/base)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run-dir", help="keep the training run there (an interrupted one is resumed)")
    parser.add_argument("--tagging-from", help="run only the tagging stage, on the teacher in this folder")
    args = parser.parse_args(argv)

    from effhub.models.clip_teacher.weights import BASE_TEACHER, SHIPPED_DIR
    from effhub.recipes import load_recipe, recipe_to_dict

    from .teacher import train_teacher

    recipe = load_recipe("clip-teacher", args.recipe, args.set)
    target = Path(args.output) if args.output else SHIPPED_DIR / BASE_TEACHER
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        start = None
        if args.tagging_from:
            # the start weights are read before the target is replaced, so FOLDER may be the target itself
            start = tagging_start(Path(args.tagging_from))
            recipe.tagging.start_from = start.pop("folder")
        train_teacher(recipe, staging, threads=args.threads, run_dir=args.run_dir)
        if start is not None:
            recipe.tagging.start_from = None
            (staging / "recipe.json").write_text(json.dumps(recipe_to_dict(recipe), indent=2) + "\n")
            record = json.loads((staging / "training.json").read_text())
            record["tagging_started_from"] = start
            (staging / "training.json").write_text(json.dumps(record, indent=2) + "\n")
        figures = record_figures(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(json.dumps(figures["zero_shot"], indent=2))
    size = sum(p.stat().st_size for p in target.iterdir())
    print(f"shipped {target} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
