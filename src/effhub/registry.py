"""The method registry: how each method folder makes itself known to ``import effhub`` and to the CLI.

A method folder (``effhub/models/<name>/`` or ``effhub/adapters/<name>/``) calls :func:`register_method` from its
``__init__.py``, next to its Auto-class registrations. :func:`discover` imports every such folder, so adding a method
means adding a folder: nothing else is edited. Entry points are given as ``"module:function"`` strings and imported
only when used, so ``effhub --help`` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import UnknownMethodError

_METHODS: dict[str, "MethodEntry"] = {}
_DISCOVERED = False
# packages whose sub-packages are method folders
METHOD_PACKAGES = ("effhub.models", "effhub.adapters")


@dataclass(frozen=True)
class MethodEntry:
    """What a method contributes to effhub.

    Args:
        name (`str`): the name users type (`effhub train <name>`).
        description (`str`): one line for `effhub methods` and `effhub --help`.
        recipe_class (`str`): `"module:Class"` of the recipe dataclass that validates this method's recipes.
        train (`str`): `"module:function"` taking `(recipe, args)`; runs training and returns the output directory.
        evaluate (`str`, *optional*): `"module:function"` taking `(run_dir, args)`; returns a metrics dict.
        convert (`str`, *optional*): `"module:function"` taking `(source, args)`; converts the authors' checkpoint.
        demo (`str`, *optional*): `"module:function"` taking `(args)`; the method's end-to-end demo.
        add_cli_arguments (`str`, *optional*): `"module:function"` taking an `argparse` parser, for extra flags.
        papers (`tuple[str, ...]`): citation keys of the papers this method implements (see CITATION.cff).
    """

    name: str
    description: str
    recipe_class: str
    train: str
    evaluate: str | None = None
    convert: str | None = None
    demo: str | None = None
    add_cli_arguments: str | None = None
    papers: tuple[str, ...] = field(default_factory=tuple)

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


def register_method(entry: MethodEntry) -> MethodEntry:
    """Register a method; registering the same entry twice is a no-op, a different one under the same name an error."""
    existing = _METHODS.get(entry.name)
    if existing is not None and existing != entry:
        raise ValueError(f"Two different methods were registered as '{entry.name}'")
    _METHODS[entry.name] = entry
    return entry


def discover() -> None:
    """Import every method folder once, which runs their registrations (Auto classes, PEFT method, recipes)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for package_name in METHOD_PACKAGES:
        package = importlib.import_module(package_name)
        for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if module_info.ispkg and not module_info.name.startswith("_"):
                importlib.import_module(f"{package_name}.{module_info.name}")


def get_method(name: str) -> MethodEntry:
    """Return the registered method called `name`, or raise `UnknownMethodError` listing the known ones."""
    discover()
    if name not in _METHODS:
        known = ", ".join(sorted(_METHODS)) or "none"
        raise UnknownMethodError(f"Unknown method '{name}' (known: {known})", "use one of the known method names")
    return _METHODS[name]


def list_methods() -> list[MethodEntry]:
    """All registered methods, sorted by name."""
    discover()
    return [_METHODS[name] for name in sorted(_METHODS)]


__all__ = ["MethodEntry", "register_method", "discover", "get_method", "list_methods"]
