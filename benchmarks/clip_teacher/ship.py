"""`python -m benchmarks.clip_teacher.ship`: train the `base` recipe and ship it inside the package.

Trains the shipped `base` recipe in this process with the package's own training code (`effhub train clip-teacher`'s
run, every stage; `benchmarks.clip_teacher.teacher.train_teacher`), writes the folder
`effhub/models/clip_teacher/shipped/base/` (model.safetensors, processor and tokenizer files, recipe.json,
training.json) and records the figures that `tests/models/clip_teacher/test_shipped_teacher.py` re-evaluates
(`figures.json`: the recipe's own zero-shot and retrieval evaluation). The gates are measured by `run.py`.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="base")
    parser.add_argument("--set", action="append", default=[], help="recipe override (for trials; never shipped)")
    parser.add_argument("--output", help="folder (default: the package's shipped/base)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run-dir", help="keep the training run there (an interrupted one is resumed)")
    args = parser.parse_args(argv)

    from effhub.models.clip_teacher.weights import BASE_TEACHER, SHIPPED_DIR
    from effhub.recipes import load_recipe

    from .teacher import train_teacher

    recipe = load_recipe("clip-teacher", args.recipe, args.set)
    target = Path(args.output) if args.output else SHIPPED_DIR / BASE_TEACHER
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        train_teacher(recipe, staging, threads=args.threads, run_dir=args.run_dir)
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
