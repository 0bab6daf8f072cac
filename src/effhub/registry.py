"""The method registry: how each method folder makes itself known to ``import effhub`` and to the CLI.

A method folder (``effhub/models/<name>/``, ``effhub/adapters/<name>/``, or a tool's own package such as
``effhub/budget/``) calls
:func:`register_method` from its ``__init__.py``. That file stays light (no torch, no transformers): it holds the
method's metadata, with its entry points as ``"module:function"`` strings imported only when used, so
``effhub --help``, ``effhub methods`` and ``effhub recipes list`` start fast. What needs the heavy libraries,
registering classes with the transformers Auto classes (or a tuner with PEFT), is the entry's ``integrate`` entry
point: :func:`integrate_all` runs every one of them, and ``import effhub`` calls it.

Adding a method means adding a folder: nothing else is edited.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import UnknownMethodError

_METHODS: dict[str, "MethodEntry"] = {}
_DISCOVERED = False
_INTEGRATED: set[str] = set()
# packages whose sub-packages are method folders, and method packages of their own (imported when present)
METHOD_PACKAGES = ("effhub.models", "effhub.adapters")
METHOD_MODULES = ("effhub.budget",)
# what a method is: a model (an Auto class), an adapter (a PEFT method on a base model), a tool (no model of its own)
METHOD_KINDS = ("model", "adapter", "tool")


@dataclass(frozen=True)
class MethodOption:
    """An extra command-line option of one of a method's commands, declared as data (the CLI builds the flag).

    Args:
        name (`str`): the option's name (`policy` becomes `--policy`); its value lands in the options' `extra`.
        help (`str`): one line for `--help`.
        command (`str`): the command it belongs to (`train`, `convert`, `eval`, or one of the method's own
            `MethodCommand`s).
        default (`Any`): the value when the flag is absent.
        required (`bool`): the flag must be given.
    """

    name: str
    help: str
    command: str = "train"
    default: Any = None
    required: bool = False


@dataclass(frozen=True)
class MethodCommand:
    """A command of a method's own, run as `effhub <method> <name> --flags` (e.g. `effhub dime-fm cache-features`).

    Args:
        name (`str`): the sub-command's name.
        help (`str`): one line for `--help`.
        run (`str`): `"module:function"` taking the `{option name: value}` dict of its `MethodOption`s (those whose
            `command` is `name`); returns an exit status or `None`.
    """

    name: str
    help: str
    run: str


@dataclass(frozen=True)
class MethodEntry:
    """What a method contributes to effhub.

    Args:
        name (`str`): the name users type (`effhub train <name>`).
        description (`str`): one line for `effhub methods` and `effhub --help`.
        kind (`str`): `"model"`, `"adapter"` or `"tool"`.
        recipe_class (`str`): `"module:Class"` of the recipe dataclass that validates this method's recipes.
        train (`str`, *optional*): `"module:function"` taking `(recipe, RunOptions)`; returns the run folder.
        evaluate (`str`, *optional*): `"module:function"` taking `(run_dir, EvalOptions)`; returns a metrics dict.
        convert (`str`, *optional*): `"module:function"` taking `(source, ConvertOptions)`.
        demo (`str`, *optional*): `"module:function"` taking `(DemoOptions)`; the method's end-to-end demo.
        export (`str`, *optional*): `"module:function"` taking `(run_dir, format, output)`: write a trained run in
            another format (`effhub export <run> --format <format> --output <folder>`); returns the folder.
        integrate (`str`, *optional*): `"module:function"` registering the method's classes with transformers' Auto
            classes (or PEFT); run by `import effhub`.
        options (`tuple[MethodOption, ...]`): extra command-line options of the method's commands.
        tools (`tuple[MethodCommand, ...]`): commands of the method's own (`effhub <name> <command>`).
        papers (`tuple[str, ...]`): citation keys of the papers this method implements (`CITATION.cff`).
    """

    name: str
    description: str
    recipe_class: str
    kind: str = "model"
    train: str | None = None
    evaluate: str | None = None
    convert: str | None = None
    demo: str | None = None
    export: str | None = None
    integrate: str | None = None
    options: tuple[MethodOption, ...] = field(default_factory=tuple)
    tools: tuple[MethodCommand, ...] = field(default_factory=tuple)
    papers: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.kind not in METHOD_KINDS:
            raise ValueError(f"method '{self.name}' has kind {self.kind!r}; use one of {', '.join(METHOD_KINDS)}")

    def load(self, attribute: str) -> Callable[..., Any] | type:
        """Import and return the object behind one of the `"module:name"` fields."""
        target = getattr(self, attribute)
        if target is None:
            raise UnknownMethodError(
                f"Method '{self.name}' has no '{attribute}' entry point",
                f"run `effhub methods` to see what '{self.name}' supports",
            )
        module_name, _, object_name = target.partition(":")
        return getattr(importlib.import_module(module_name), object_name)

    def options_of(self, command: str) -> tuple[MethodOption, ...]:
        """The extra options of `command`."""
        return tuple(option for option in self.options if option.command == command)

    @property
    def commands(self) -> list[str]:
        """The commands this method supports (for `effhub methods`)."""
        return ([name for name in ("train", "evaluate", "convert", "demo", "export") if getattr(self, name)]
                + [tool.name for tool in self.tools])


def register_method(entry: MethodEntry) -> MethodEntry:
    """Register a method; registering the same entry twice is a no-op, a different one under the same name an error."""
    existing = _METHODS.get(entry.name)
    if existing is not None and existing != entry:
        raise ValueError(f"Two different methods were registered as '{entry.name}'")
    _METHODS[entry.name] = entry
    return entry


def discover() -> None:
    """Import every method folder once (light: their metadata only)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for package_name in METHOD_PACKAGES:
        package = importlib.import_module(package_name)
        for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if module_info.ispkg and not module_info.name.startswith("_"):
                importlib.import_module(f"{package_name}.{module_info.name}")
    for module_name in METHOD_MODULES:
        if importlib.util.find_spec(module_name) is not None:
            importlib.import_module(module_name)


def integrate_all() -> None:
    """Run every method's `integrate` entry point once: Auto-class (and PEFT) registrations."""
    discover()
    for name in sorted(_METHODS):
        entry = _METHODS[name]
        if entry.integrate and name not in _INTEGRATED:
            entry.load("integrate")()
            _INTEGRATED.add(name)


def get_method(name: str) -> MethodEntry:
    """Return the registered method called `name`, or raise `UnknownMethodError` listing the known ones."""
    discover()
    if name not in _METHODS:
        known = ", ".join(sorted(_METHODS)) or "none"
        raise UnknownMethodError(f"Unknown method '{name}' (known: {known})", "use one of the known method names")
    return _METHODS[name]


def list_methods(kind: str | None = None) -> list[MethodEntry]:
    """All registered methods (of one `kind` when given), sorted by name."""
    discover()
    return [_METHODS[name] for name in sorted(_METHODS) if kind is None or _METHODS[name].kind == kind]


__all__ = ["MethodEntry", "MethodOption", "MethodCommand", "METHOD_KINDS", "register_method", "discover", "integrate_all",
           "get_method", "list_methods"]
