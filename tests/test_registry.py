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


def test_methods_show_their_kind():
    assert get_method("adashare").kind == "model"
    assert {entry.name for entry in list_methods("model")} >= {"adashare", "tiny", "clip-teacher"}
    assert all(entry.kind == "tool" for entry in list_methods("tool"))
    with pytest.raises(ValueError, match="kind"):
        MethodEntry(name="x", description="x", recipe_class="x:y", kind="widget")
    from effhub.cli import main

    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["methods"]) == 0
    line = next(row for row in out.getvalue().splitlines() if row.startswith("adashare"))
    assert line.split()[1] == "model"


# a method folder of each kind, written to a temporary folder and discovered in a fresh interpreter
_DISCOVERY_SCRIPT = r"""
import sys, importlib
sys.path.insert(0, sys.argv[1])
import effhub.adapters, effhub.registry as registry
effhub.adapters.__path__.append(sys.argv[1] + "/adapters")
registry.METHOD_MODULES = registry.METHOD_MODULES + ("fake_tool",)
registry._DISCOVERED = False  # `import effhub.adapters` ran discovery before the folders were added
registry.discover()
kinds = {entry.name: entry.kind for entry in registry.list_methods()}
print(kinds["fake-adapter"], kinds["fake-tool"], kinds["tiny"])
print(registry.get_method("fake-adapter").load("train").__name__)
"""


def test_discovery_finds_models_adapters_and_tools(tmp_path):
    folder = tmp_path / "adapters" / "fake_adapter"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(
        "from effhub.registry import MethodEntry, register_method\n"
        "register_method(MethodEntry(name='fake-adapter', kind='adapter', description='d', recipe_class='x:y',\n"
        "                            train='effhub.adapters.fake_adapter.train_fake:train'))\n")
    (folder / "train_fake.py").write_text("def train(recipe, options):\n    return None\n")
    (tmp_path / "fake_tool.py").write_text(
        "from effhub.registry import MethodEntry, register_method\n"
        "register_method(MethodEntry(name='fake-tool', kind='tool', description='d', recipe_class='x:y'))\n")
    result = subprocess.run([sys.executable, "-c", _DISCOVERY_SCRIPT, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["adapter", "tool", "model", "train"]


_LIGHT_CLI_SCRIPT = r"""
import os, sys, contextlib, io
sys.argv = ["effhub"] + sys.argv[1:]
import effhub_cli
with contextlib.redirect_stdout(io.StringIO()):
    try:
        effhub_cli.main()
    except SystemExit:
        pass
heavy = sorted(name for name in ("torch", "transformers", "accelerate", "datasets") if name in sys.modules)
print("heavy:" + ",".join(heavy), "variable:" + str("_EFFHUB_CLI_DEFER_INTEGRATION" in os.environ))
"""


@pytest.mark.parametrize("argv", [["--help"], ["methods"], ["recipes", "list"], ["train", "--help"]])
def test_cli_metadata_commands_import_no_torch(argv):
    """The console script answers metadata commands from the light registry: no torch, transformers, accelerate or
    datasets import (what made every call take seconds), and no leftover variable for child processes."""
    result = subprocess.run([sys.executable, "-c", _LIGHT_CLI_SCRIPT, *argv], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["heavy:", "variable:False"]


def test_import_effhub_registers_after_the_cli_module_was_loaded():
    """`import effhub` in a user's process registers every Auto class, even though the CLI defers it."""
    code = ("import effhub\nfrom transformers import AutoConfig, AutoModel\n"
            "print(type(AutoConfig.for_model('effhub_adashare')).__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "AdaShareConfig"
