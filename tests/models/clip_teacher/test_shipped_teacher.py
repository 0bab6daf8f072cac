"""The base teacher shipped inside the package: it loads offline with plain transformers, it is the shipped recipe's
output, and re-evaluating it finds the figures recorded beside it."""

from __future__ import annotations

import json

import pytest

from effhub.models.clip_teacher.weights import FIGURES_FILE, base_teacher_path, recorded_figures

MAX_SHIPPED_BYTES = 20_000_000


def test_shipped_folder_is_small_safetensors_and_records_its_recipe():
    folder = base_teacher_path()
    names = {path.name for path in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt", "recipe.json",
            "training.json", FIGURES_FILE} <= names
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in names)
    assert sum(path.stat().st_size for path in folder.iterdir()) <= MAX_SHIPPED_BYTES
    from effhub.models.clip_teacher.training_clip_teacher import CLIPTeacherRecipe
    from effhub.recipes import build_dataclass, load_recipe

    # the shipped weights come from the shipped recipe, unchanged (keys added to the recipe since then take their
    # defaults, which leave the training as it was)
    shipped = build_dataclass(CLIPTeacherRecipe, json.loads((folder / "recipe.json").read_text()))
    assert shipped == load_recipe("clip-teacher", "base")


def test_reevaluating_the_shipped_teacher_finds_the_recorded_figures():
    from transformers import AutoTokenizer, CLIPModel

    from effhub.models.clip_teacher.evaluation import evaluate_clip
    from effhub.models.clip_teacher.training_clip_teacher import CLIPTeacherRecipe, build_world
    from effhub.recipes import build_dataclass

    folder = base_teacher_path()
    recipe = build_dataclass(CLIPTeacherRecipe, json.loads((folder / "recipe.json").read_text()))
    recipe.world.cache = False
    model = CLIPModel.from_pretrained(folder).eval()
    config = model.config
    assert config.vision_config.image_size // config.vision_config.patch_size >= 8  # an 8x8 token grid at least
    metrics = evaluate_clip(model, AutoTokenizer.from_pretrained(folder), build_world(recipe), recipe)
    recorded = recorded_figures()
    for key in ("accuracy", "top5_accuracy", "colour_accuracy", "shape_accuracy"):
        assert metrics["zero_shot"][key] == pytest.approx(recorded["zero_shot"][key], abs=0.005), key
    for key in ("image_to_text_r@1", "text_to_image_r@1"):
        assert metrics["retrieval"][key] == pytest.approx(recorded["retrieval"][key], abs=0.005), key
