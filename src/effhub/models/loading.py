"""What every effhub model and config class shares on load: clear errors for corrupt files and wrong config values.

- `CheckedLoadingMixin` (put it before `PreTrainedModel`): `from_pretrained` turns a truncated or corrupt weight file,
  or a folder without one, into a `CheckpointError` naming the file and the fix (the original error is its
  `__cause__`).
- `CheckedConfigMixin` (put it before `PreTrainedConfig`): `from_pretrained` and `from_json_file` name the
  `config.json` of a `ConfigError` raised while the config is built; `check_field` validates one value's type and
  range (the config's `__init__` calls it for each field, the transformers way).
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError, EffhubError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _is_load_failure(error: BaseException) -> bool:
    """A decoding failure of a weight file (safetensors, torch) or a missing/unreadable file."""
    if isinstance(error, EffhubError):
        return False
    if isinstance(error, OSError):
        return True
    kind = type(error)
    return kind.__name__ in ("SafetensorError", "UnpicklingError") or kind.__module__.startswith("safetensors")


def _weight_file(location: str | os.PathLike, subfolder: str = "") -> str:
    """The weight file a local folder holds (named in the error), or the location itself (a repo id, a file)."""
    folder = Path(location) / subfolder
    if folder.is_dir():
        for name in WEIGHT_FILES:
            if (folder / name).is_file():
                return str(folder / name)
    return str(location)


def load_pretrained(model_class, pretrained_model_name_or_path, *model_args, **kwargs):
    """`model_class.from_pretrained(...)` (any transformers class, e.g. `CLIPModel`), with load failures of the
    weight file turned into a `CheckpointError` naming it (the original error is its `__cause__`).

    Args:
        model_class (`type`): a `PreTrainedModel` class.
        pretrained_model_name_or_path (`str` or `os.PathLike`): a model folder or a Hub repository id.
        model_args, kwargs: passed on to `from_pretrained`.
    """
    try:
        return model_class.from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
    except Exception as error:
        raise _load_error(model_class.__name__, error, pretrained_model_name_or_path, kwargs) from error


def _load_error(class_name: str, error: Exception, location, kwargs) -> Exception:
    """The `CheckpointError` of a failed load, or `error` itself when it is no load failure."""
    if not _is_load_failure(error):
        return error
    location = str(location)
    folder = Path(location) / kwargs.get("subfolder", "")
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, OSError) and folder.is_dir() and not any((folder / n).is_file() for n in WEIGHT_FILES):
        return CheckpointError(f"model folder '{folder}' has no weight file ({' or '.join(WEIGHT_FILES[:2])})",
                               "point at a folder written by save_pretrained or `effhub train` "
                               "(its training may not have finished)")
    if isinstance(error, OSError) and not folder.exists():
        return CheckpointError(f"cannot load {class_name} from '{location}' ({detail})",
                               "pass an existing model folder or a Hub repository id you can read")
    path = _weight_file(location, kwargs.get("subfolder", ""))
    return CheckpointError(f"weight file '{path}' of {class_name} is truncated or corrupt ({detail})",
                           "download or copy it again, or save the model again")


class CheckedLoadingMixin:
    """`from_pretrained` raises `CheckpointError` naming the file for a truncated, corrupt or missing weight file."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with load failures turned into `CheckpointError`.

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`): a model folder or a Hub repository id.
            model_args, kwargs: passed on to `PreTrainedModel.from_pretrained`.
        """
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except Exception as error:
            failure = _load_error(cls.__name__, error, pretrained_model_name_or_path, kwargs)
            if failure is error:
                raise
            raise failure from error


class CheckedConfigMixin:
    """Name the config file in the `ConfigError` of a config loaded from one; `check_field` validates a value."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """`PreTrainedConfig.from_pretrained`, naming the config file in a `ConfigError`.

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`): a model folder, a config file or a repo id.
            kwargs: passed on to `PreTrainedConfig.from_pretrained`.
        """
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except ConfigError as error:
            location = Path(str(pretrained_model_name_or_path)) / kwargs.get("subfolder", "")
            where = location / "config.json" if location.is_dir() else location
            raise _in_file(error, where) from error

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """`PreTrainedConfig.from_dict`, refusing the config of another model type (transformers only warns, then
        builds a default config and a randomly initialised model).

        Args:
            config_dict (`dict`): the config's values.
            kwargs: passed on to `PreTrainedConfig.from_dict`.
        """
        given = config_dict.get("model_type") if isinstance(config_dict, dict) else None
        if given and given != cls.model_type:
            raise ConfigError(f"the config is of model type '{given}', not '{cls.model_type}' ({cls.__name__})",
                              "load it with the model class of its type, or with AutoModel.from_pretrained after "
                              "`import effhub`")
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def from_json_file(cls, json_file):
        """`PreTrainedConfig.from_json_file`, naming the file in a `ConfigError`.

        Args:
            json_file (`str` or `os.PathLike`): the config file.
        """
        try:
            return super().from_json_file(json_file)
        except ConfigError as error:
            raise _in_file(error, json_file) from error


def _in_file(error: ConfigError, path) -> ConfigError:
    problem = error.problem if str(path) in error.problem else f"{path}: {error.problem}"
    return type(error)(problem, error.fix)


def check_field(config_name: str, name: str, value: Any, kind: str, minimum: float | None = None,
                maximum: float | None = None, choices: tuple | None = None, exclusive_minimum: bool = False) -> Any:
    """Return `value` as the field's type, or raise a `ConfigError` naming the field, the value and the fix.

    Args:
        config_name (`str`): the config class, named in the error.
        name (`str`): the field.
        value: the given value.
        kind (`str`): `int`, `float`, `bool` or `str` (an int is accepted for a float; a bool never for a number).
        minimum, maximum (`float`, *optional*): the allowed range (inclusive, unless `exclusive_minimum`).
        choices (`tuple`, *optional*): the allowed values.
        exclusive_minimum (`bool`): the value must be greater than `minimum`.
    """
    expected = {"int": numbers.Integral, "float": numbers.Real, "bool": bool, "str": str}[kind]
    wrong_type = not isinstance(value, expected) or (kind in ("int", "float") and isinstance(value, bool))
    if kind == "float" and not wrong_type and not math.isfinite(value):
        wrong_type = True
    if wrong_type:
        wanted = {"int": "an integer", "float": "a finite number", "bool": "true or false", "str": "a string"}[kind]
        quotes = " (in config.json: no quotes around numbers)" if kind in ("int", "float") else ""
        raise ConfigError(f"{config_name} field '{name}' is {value!r} (a {type(value).__name__}), expected {wanted}",
                          f"set '{name}' to {_example(kind, minimum, choices)}{quotes}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{config_name} field '{name}' is {value!r}", f"use one of {list(choices)}")
    low = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    if low or (maximum is not None and value > maximum):
        bounds = (f"{'>' if exclusive_minimum else '>='} {minimum}" if minimum is not None else "") + \
                 (" and " if minimum is not None and maximum is not None else "") + \
                 (f"<= {maximum}" if maximum is not None else "")
        raise ConfigError(f"{config_name} field '{name}' is {value!r}, outside its range", f"set it {bounds}")
    return {"int": int, "float": float}.get(kind, lambda same: same)(value)


def _example(kind: str, minimum, choices) -> str:
    if choices:
        return f"one of {list(choices)}"
    return {"int": f"an integer such as {max(int(minimum), 1) if minimum is not None else 1}", "float": "a number",
            "bool": "true or false", "str": "a string"}[kind]


def check_mapping(config_name: str, name: str, value: Any, value_kind: str, minimum: float | None = None) -> dict:
    """Return `value` (a mapping of names to `value_kind` values) as a dict, or raise a `ConfigError` naming it.

    Args:
        config_name (`str`): the config class, named in the error.
        name (`str`): the field.
        value: the given mapping.
        value_kind (`str`): the kind of each value (see `check_field`).
        minimum (`float`, *optional*): the smallest allowed value.
    """
    if not isinstance(value, dict):
        raise ConfigError(f"{config_name} field '{name}' is {value!r} (a {type(value).__name__}), expected a "
                          f"mapping of names to {value_kind} values", f"set '{name}' to e.g. {{\"name\": 1}}")
    return {str(key): check_field(config_name, f"{name}.{key}", item, value_kind, minimum)
            for key, item in value.items()}


def check_list(config_name: str, name: str, value: Any, item_kind: str, minimum: float | None = None) -> list:
    """Return `value` (a list of `item_kind` values) as a list, or raise a `ConfigError` naming the field.

    Args:
        config_name (`str`): the config class, named in the error.
        name (`str`): the field.
        value: the given list.
        item_kind (`str`): the kind of each item (see `check_field`).
        minimum (`float`, *optional*): the smallest allowed item.
    """
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"{config_name} field '{name}' is {value!r} (a {type(value).__name__}), expected a list of "
                          f"{item_kind} values", f"set '{name}' to a list such as [1, 2]")
    return [check_field(config_name, f"{name}[{index}]", item, item_kind, minimum)
            for index, item in enumerate(value)]


__all__ = ["load_pretrained", "CheckedLoadingMixin", "CheckedConfigMixin", "check_field", "check_mapping", "check_list"]
