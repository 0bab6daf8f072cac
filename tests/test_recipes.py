"""Recipes: shipped ones load, and bad ones fail with a clear RecipeError before any work starts."""

from dataclasses import dataclass, field

import pytest

from effhub.errors import EffhubError, RecipeError
from effhub.recipes import apply_overrides, build_dataclass, list_recipes, load_recipe, recipe_to_dict


@dataclass
class Inner:
    steps: int = 1
    rate: float = 0.1
    tasks: list[str] = field(default_factory=list)
    mode: str | None = None


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    flags: dict[str, bool] = field(default_factory=dict)


def test_every_shipped_recipe_loads():
    shipped = list_recipes()
    assert "tiny" in shipped and "demo" in shipped["tiny"]
    for method, names in shipped.items():
        for name in names:
            recipe = load_recipe(method, name)
            assert recipe_to_dict(recipe)


def test_build_converts_and_validates():
    recipe = build_dataclass(Outer, {"inner": {"steps": 3, "rate": 1, "tasks": ["a"]}, "flags": {"x": True}})
    assert recipe.inner.steps == 3 and recipe.inner.rate == 1.0 and isinstance(recipe.inner.rate, float)
    assert recipe.inner.tasks == ["a"] and recipe.flags == {"x": True}


@pytest.mark.parametrize(
    "mapping, words",
    [
        ({"inner": {"stepz": 3}}, ["unknown key", "stepz", "steps"]),
        ({"inner": {"steps": "three"}}, ["inner.steps", "int"]),
        ({"inner": {"steps": 2.5}}, ["inner.steps"]),
        ({"inner": {"tasks": "seg"}}, ["inner.tasks", "list"]),
        ({"inner": 3}, ["inner", "mapping"]),
        ({"flags": {"x": "yes"}}, ["flags.x", "true or false"]),
    ],
)
def test_bad_recipe_values_name_the_key_and_the_fix(mapping, words):
    with pytest.raises(RecipeError) as error:
        build_dataclass(Outer, mapping)
    message = str(error.value)
    assert "Fix:" in message
    for word in words:
        assert word in message


def test_overrides_reach_nested_sections():
    mapping = apply_overrides({"inner": {"steps": 1}}, ["inner.steps=7", "name=y", "inner.tasks=[a, b]"])
    recipe = build_dataclass(Outer, mapping)
    assert recipe.inner.steps == 7 and recipe.name == "y" and recipe.inner.tasks == ["a", "b"]
    with pytest.raises(RecipeError):
        apply_overrides({}, ["no-equals-sign"])


def test_unknown_recipe_lists_the_shipped_ones(tmp_path):
    with pytest.raises(RecipeError, match="demo"):
        load_recipe("tiny", "no-such-recipe")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe("tiny", bad)
    bad.write_text("- a list\n")
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe("tiny", bad)
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe("tiny", tmp_path / "missing.yaml")


def test_recipe_file_with_unknown_key(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("seed: 1\ntrain:\n  stepz: 5\n")
    with pytest.raises(EffhubError, match="stepz"):
        load_recipe("tiny", path)


def test_shipped_name_wins_over_a_same_named_folder(tmp_path, monkeypatch):
    (tmp_path / "demo").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_recipe("tiny", "demo").train.steps > 0


def test_a_recipe_on_a_base_changes_only_its_own_keys(tmp_path):
    """`base: <recipe>` reads the base and puts the file's keys on top, sections merged key by key; a cycle of
    bases is a RecipeError."""
    demo = recipe_to_dict(load_recipe("tiny", "demo"))
    path = tmp_path / "mine.yaml"
    path.write_text("base: demo\ntrain:\n  steps: 7\n")
    mine = recipe_to_dict(load_recipe("tiny", path))
    assert mine["train"]["steps"] == 7
    assert {**mine, "train": {**mine["train"], "steps": demo["train"]["steps"]}} == demo
    path.write_text(f"base: {path}\n")
    with pytest.raises(RecipeError, match="its own base"):
        load_recipe("tiny", path)
