"""Recipes: named, typed training set-ups shipped as YAML beside each method (``<method package>/recipes/<name>.yaml``).

A method declares its recipe as a dataclass (its `MethodEntry.recipe_class`); the method's package (the one holding
the recipe class's module, e.g. ``effhub/models/adashare/``) ships its recipes in its ``recipes/`` folder, found
through the registry without importing the method's heavy modules. :func:`load_recipe` reads a shipped
recipe by name or any YAML file by path, applies ``key=value`` overrides (dotted keys reach nested dataclasses), and
checks every key and type against the dataclass, so a typo fails before a run starts, not hours into it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import RecipeError

RECIPE_SUFFIX = ".yaml"
RECIPE_FOLDER = "recipes"
BASE_KEY = "base"


def recipe_folder(method: str):
    """The folder of `method`'s shipped recipes (a `importlib.resources` traversable): `recipes/` in the package of
    its recipe class (`effhub.models.adashare.recipe_adashare:AdaShareRecipe` -> `effhub/models/adashare/recipes`)."""
    from ..registry import get_method

    module_name = get_method(method).recipe_class.partition(":")[0]
    return resources.files(module_name.rpartition(".")[0]).joinpath(RECIPE_FOLDER)


def list_recipes(method: str | None = None) -> dict[str, list[str]]:
    """Shipped recipe names per method (`{method: [name, ...]}`), or for one method."""
    from ..registry import get_method, list_methods

    methods = [get_method(method)] if method is not None else list_methods()
    found: dict[str, list[str]] = {}
    for entry in methods:
        folder = recipe_folder(entry.name)
        if not folder.is_dir():
            continue
        names = sorted(p.name[: -len(RECIPE_SUFFIX)] for p in folder.iterdir() if p.name.endswith(RECIPE_SUFFIX))
        if names:
            found[entry.name] = names
    return found


def read_recipe_file(method: str, name_or_path: str | Path,
                     _reading: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """Return the raw mapping of a recipe and a description of where it came from. A recipe with `base: <name or
    path>` is that recipe with its own keys on top (sections merged key by key)."""
    from ..registry import get_method

    candidate = Path(name_or_path)
    # a path must look like one (a YAML suffix or a folder part): a file that happens to share a recipe's name in the
    # working directory must not shadow the shipped recipe
    if candidate.suffix in (".yaml", ".yml") or len(candidate.parts) > 1:
        if not candidate.is_file():
            raise RecipeError(f"Recipe file '{candidate}' does not exist", "pass a shipped recipe name or a YAML path")
        text, source = candidate.read_text(), str(candidate)
    else:
        shipped = recipe_folder(method).joinpath(f"{name_or_path}{RECIPE_SUFFIX}")
        if not shipped.is_file():
            known = ", ".join(list_recipes(method).get(method, [])) or "none"
            raise RecipeError(
                f"Unknown recipe '{name_or_path}' for method '{method}' (shipped: {known})",
                f"run `effhub recipes list {method}` or pass the path of a YAML file",
            )
        package = get_method(method).recipe_class.partition(":")[0].rpartition(".")[0]
        text = shipped.read_text()
        source = f"{package.replace('.', '/')}/{RECIPE_FOLDER}/{name_or_path}{RECIPE_SUFFIX}"
    try:
        mapping = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise RecipeError(f"Recipe {source} is not valid YAML ({error})", "fix the YAML syntax") from error
    if not isinstance(mapping, dict):
        raise RecipeError(f"Recipe {source} must be a mapping of keys to values", "write it as `key: value` lines")
    if BASE_KEY in mapping:
        base = mapping.pop(BASE_KEY)
        if base in _reading:
            raise RecipeError(f"Recipe {source} is its own base (through '{base}')", f"remove the `{BASE_KEY}:` cycle")
        _reading = (*_reading, str(name_or_path))
        base_mapping, _ = read_recipe_file(method, base, _reading)
        mapping = merge_recipe_mappings(base_mapping, mapping)
    return mapping, source


def merge_recipe_mappings(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` on top: sections merge key by key, every other value (lists included) is replaced."""
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = merge_recipe_mappings(merged[key], value) \
            if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def apply_overrides(mapping: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply `key=value` (dotted keys for nested sections) overrides; values are parsed as YAML scalars."""
    for override in overrides or []:
        key, sep, raw_value = override.partition("=")
        if not sep or not key:
            raise RecipeError(f"Override '{override}' is not of the form key=value", "write e.g. `train.steps=100`")
        target = mapping
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise RecipeError(f"Override '{override}': '{parent}' is not a section", "override a leaf key instead")
        target[leaf] = yaml.safe_load(raw_value)
    return mapping


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against `annotation` and convert it (lists to tuples, ints to floats, dicts to dataclasses)."""
    if annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        errors = []
        for option in (a for a in arguments if a is not type(None)):
            try:
                return _convert(value, option, where)
            except RecipeError as error:
                errors.append(error)
        raise errors[0]
    if origin is Literal:
        if value not in arguments:
            raise RecipeError(f"{where} is {value!r}, expected one of {list(arguments)}", f"set {where} to one of them")
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise RecipeError(f"{where} must be a section (mapping), got {value!r}", f"write {where} as a mapping")
        return build_dataclass(annotation, value, where)
    if origin in (list, tuple) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where} must be a list, got {value!r}", f"write {where} as a YAML list")
        if origin is tuple and len(arguments) == 2 and arguments[1] is Ellipsis:
            item_type = arguments[0]
        elif origin is tuple and arguments:
            if len(arguments) != len(value):
                raise RecipeError(f"{where} must have {len(arguments)} items, got {len(value)}", "fix its length")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, arguments)))
        else:
            item_type = arguments[0] if arguments else Any
        items = [_convert(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or annotation is tuple) else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where} must be a mapping, got {value!r}", f"write {where} as a mapping")
        key_type, value_type = arguments if arguments else (Any, Any)
        return {_convert(k, key_type, f"{where} key"): _convert(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise RecipeError(f"{where} must be true or false, got {value!r}", f"set {where} to true or false")
    if isinstance(annotation, type) and not isinstance(value, annotation):
        raise RecipeError(
            f"{where} must be of type {_type_name(annotation)}, got {value!r} ({type(value).__name__})",
            f"set {where} to a {_type_name(annotation)}",
        )
    return value


# count-like recipe keys, by name in every method's recipe: batch sizes at least 1, other counts and rates at least 0
_AT_LEAST_ONE = ("batch_size",)
_AT_LEAST_ZERO = ("steps", "epochs", "samples", "per_epoch", "every", "lr", "learning_rate", "weight_decay",
                  "workers")


def _check_range(name: str, value: Any, where: str) -> None:
    """Refuse a negative count (or a batch size below 1) under a count-like key (see `_AT_LEAST_ONE`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    matches = lambda suffixes: any(name == s or name.endswith(f"_{s}") for s in suffixes)  # noqa: E731
    minimum = 1 if matches(_AT_LEAST_ONE) else 0 if matches(_AT_LEAST_ZERO) else None
    if minimum is not None and not value >= minimum:
        raise RecipeError(f"{where} is {value!r}, below {minimum}", f"set {where} to at least {minimum}")


def build_dataclass(cls: type, mapping: dict[str, Any], where: str = "recipe"):
    """Build dataclass `cls` from `mapping`, refusing unknown keys, values of the wrong type, and negative counts
    (batch sizes below 1) under count-like keys such as `batch_size`, `*_steps`, `*_samples`, `lr`."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise RecipeError(
            f"{where} has unknown key(s) {unknown} (known: {sorted(fields)})", "remove or rename the unknown key(s)"
        )
    kwargs = {name: _convert(value, hints[name], f"{where}.{name}") for name, value in mapping.items()}
    for name, value in kwargs.items():
        _check_range(name, value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except RecipeError:
        raise
    except (TypeError, ValueError) as error:
        raise RecipeError(f"{where} is invalid: {error}", "check the recipe against its documentation") from error


def load_recipe(method: str, name_or_path: str | Path, overrides: list[str] | None = None):
    """Load, override and validate a recipe of `method`; returns an instance of the method's recipe dataclass."""
    from ..registry import get_method

    recipe_class = get_method(method).load("recipe_class")
    mapping, source = read_recipe_file(method, name_or_path)
    mapping = apply_overrides(mapping, overrides)
    return build_dataclass(recipe_class, mapping, where=f"recipe '{Path(source).stem}'")


def recipe_to_dict(recipe) -> dict[str, Any]:
    """A recipe as plain YAML-serialisable data (tuples become lists), for run snapshots and cards."""

    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(recipe))


__all__ = ["recipe_folder", "list_recipes", "read_recipe_file", "merge_recipe_mappings", "apply_overrides", "build_dataclass", "load_recipe", "recipe_to_dict"]
