"""The method registry: discovery on import, clear errors, no collisions."""

import subprocess
import sys

import pytest

import effhub
from effhub.errors import UnknownMethodError
from effhub.registry import MethodEntry, get_method, list_methods, register_method


def test_import_registers_methods_and_auto_classes():
    from transformers import AutoConfig

    names = [entry.name for entry in list_methods()]
    assert "tiny" in names
    assert type(AutoConfig.for_model("effhub_tiny")).__name__ == "EffhubTinyConfig"


def test_unknown_method_lists_known_ones():
    with pytest.raises(UnknownMethodError) as error:
        get_method("adashar")
    assert "tiny" in str(error.value) and "Fix:" in str(error.value)


def test_entry_points_load_lazily():
    entry = get_method("tiny")
    assert entry.load("recipe_class").__name__ == "TinyRecipe"
    with pytest.raises(UnknownMethodError, match="convert"):
        entry.load("convert")


def test_same_name_different_entry_is_refused():
    entry = get_method("tiny")
    assert register_method(entry) is entry  # idempotent
    with pytest.raises(ValueError, match="tiny"):
        register_method(MethodEntry(name="tiny", description="other", recipe_class="x:y", train="x:z"))


def test_version_and_cli_entry_point():
    assert effhub.__version__
    result = subprocess.run([sys.executable, "-m", "effhub", "methods"], capture_output=True, text=True, check=True)
    assert "tiny" in result.stdout
    result = subprocess.run([sys.executable, "-m", "effhub", "recipes", "list"], capture_output=True, text=True,
                            check=True)
    assert "tiny: demo" in result.stdout
