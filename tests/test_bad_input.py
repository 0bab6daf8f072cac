"""What a careful user breaks at the public entry points: one clear `effhub.errors` line, nothing left on disk."""

import hashlib
import socket
import subprocess
import sys

import pytest

from effhub.cli import main
from effhub.errors import ConfigError, RecipeError, UnknownMethodError
from effhub.recipes import load_recipe
from tests.training._training_fixtures import build_phases, train_one_stage


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("effhub: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _tree(folder):
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()} if folder.exists() else None


@pytest.mark.parametrize("method,key", [("tiny", "train.batch_size"), ("adashare", "batch_size")])
def test_negative_batch_size_fails_before_anything_is_written(tmp_path, capsys, method, key):
    output = tmp_path / "run"
    assert main(["train", method, "--output-dir", str(output), "--set", f"{key}=-3", "--no-progress"]) == 2
    assert f"{key} is -3, below 1" in _one_error_line(capsys)
    assert not output.exists()


@pytest.mark.parametrize("override,words", [
    ("train.steps=-1", "train.steps is -1, below 0"), ("train.learning_rate=-0.1", "below 0"),
    ("data.train_samples=-5", "below 0"), ("train.steps=ten", "must be of type int"),
    ("train.nope=1", "unknown key(s) ['nope']"), ("train=3", "must be a section"),
])
def test_recipe_overrides_of_the_wrong_type_or_range(override, words):
    with pytest.raises(RecipeError) as caught:
        load_recipe("tiny", "demo", [override])
    assert words in str(caught.value) and "Fix:" in str(caught.value)


def test_a_phase_refused_by_the_run_writes_nothing(tmp_path):
    output = tmp_path / "run"
    with pytest.raises(ConfigError, match="batch_size=-3"):
        train_one_stage(output, phases=build_phases(batch_size=-3))
    assert not output.exists() or not any(output.iterdir())


@pytest.mark.parametrize("argv", [["recipes", "list", "nomethod"], ["recipes", "show", "nomethod", "demo"],
                                  ["demo", "nomethod"], ["train", "--help"][:0] or ["eval", ".", "--method", "x"]])
def test_unknown_method_lists_the_known_ones(tmp_path, capsys, argv):
    assert main(argv) == 2
    err = _one_error_line(capsys)
    assert "Unknown method" in err or "no run_info.json" in err
    if "Unknown method" in err:
        assert "known: adashare" in err and "tiny" in err


def test_recipes_list_of_an_unknown_method_raises():
    from effhub.recipes import list_recipes

    with pytest.raises(UnknownMethodError, match="known: .*tiny"):
        list_recipes("nomethod")


def test_cli_refusals_name_the_problem(tmp_path, capsys):
    empty = tmp_path / "notamodel"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    before = _tree(tmp_path)
    cases = [
        (["card", str(tmp_path / "missing")], "does not exist"),
        (["card", str(empty)], "has no card_spec.json"),
        (["push", str(empty), "org/x", "--endpoint", "http://127.0.0.1:9"], "holds no model weights"),
        (["push", str(tmp_path / "missing"), "org/x", "--endpoint", "http://127.0.0.1:9"], "is not a folder"),
        (["eval", str(empty)], "has no run_info.json"),
        (["eval", str(tmp_path / "missing")], "does not exist"),
        (["convert", "adashare", str(tmp_path / "missing.pth"), "--recipe", "demo", "--output",
          str(tmp_path / "out")], "does not exist"),
        (["convert", "adashare", str(empty / "notes.txt"), "--recipe", "demo", "--output", str(tmp_path / "out")],
         "cannot be read"),
        (["train", "tiny", "--recipe", str(tmp_path / "nope.yaml"), "--output-dir", str(tmp_path / "out")],
         "does not exist"),
        (["train", "tiny", "--recipe", "nope", "--output-dir", str(tmp_path / "out")], "Unknown recipe 'nope'"),
        (["train", "adashare", "--recipe", "nyuv2-2task", "--data-dir", str(tmp_path / "nodata"), "--output-dir",
          str(tmp_path / "out")], "NYU-v2 folder"),
        (["train", "adashare", "--recipe", "nyuv2-2task", "--output-dir", str(tmp_path / "out")], "needs its folder"),
        (["browse", "--endpoint", "http://127.0.0.1:9"], "is unreachable"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        assert words in _one_error_line(capsys), argv
    assert _tree(tmp_path) == before  # nothing written, nothing changed


def test_convert_of_a_truncated_checkpoint(tmp_path, capsys):
    import torch

    good = tmp_path / "model.pth.tar"
    torch.save({"state_dict": {"a": torch.zeros(1000)}}, good)
    truncated = tmp_path / "truncated.pth.tar"
    truncated.write_bytes(good.read_bytes()[:500])
    assert main(["convert", "adashare", str(truncated), "--recipe", "demo", "--output", str(tmp_path / "out")]) == 2
    assert "truncated.pth.tar' cannot be read" in _one_error_line(capsys)
    assert main(["convert", "adashare", str(good), "--recipe", "demo", "--output", str(tmp_path / "out")]) == 2
    assert "model.pth.tar' holds no state dict" in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_hub_serve_on_a_port_in_use_leaves_no_folder(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        root = tmp_path / "hub"
        assert main(["hub", "serve", "--root", str(root), "--port", str(port)]) == 2
    assert "Address already in use" in _one_error_line(capsys) or "cannot listen" in capsys.readouterr().err
    assert not root.exists()


def test_a_model_loaded_without_import_effhub_names_effhub(tmp_path):
    """transformers has no hook for an unknown model type: its error shows the model type, which names effhub."""
    from effhub.models.tiny import EffhubTinyConfig, EffhubTinyForImageClassification

    EffhubTinyForImageClassification(EffhubTinyConfig(hidden_size=4)).save_pretrained(tmp_path)
    code = f"from transformers import AutoModel\nAutoModel.from_pretrained({str(tmp_path)!r})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "effhub" not in sys.modules.get("__main__").__name__
    assert "model type `effhub_tiny`" in result.stderr


def test_every_effhub_model_type_names_effhub():
    import effhub  # noqa: F401
    from transformers import CONFIG_MAPPING

    from effhub.models.adashare import AdaShareConfig
    from effhub.models.tiny import EffhubTinyConfig

    for config_class in (AdaShareConfig, EffhubTinyConfig):
        assert config_class.model_type.startswith("effhub_")
        assert CONFIG_MAPPING[config_class.model_type] is config_class
