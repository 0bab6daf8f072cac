"""The tiny method end to end: CLI training, evaluation, card, and the demo through the local hub."""

import json
import subprocess
import sys

from huggingface_hub import ModelCard


def run_cli(*arguments, cwd=None):
    return subprocess.run([sys.executable, "-m", "effhub", *arguments], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_train_eval_and_card(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", "tiny", "--output-dir", str(run_dir), "--set", "train.steps=40", "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads((run_dir / "eval_results.json").read_text())
    accuracy = evaluation["results"][0]["metric_value"]
    assert 0.35 < accuracy <= 1.0, accuracy  # 4 balanced classes: chance is 0.25
    card = ModelCard.load(run_dir / "README.md")
    assert card.data.eval_results[0].metric_value == accuracy
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["method"] == "tiny" and info["recipe"]["train"]["steps"] == 40
    result = run_cli("eval", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert abs(json.loads(result.stdout)["accuracy"] - accuracy) < 1e-6


def test_bad_override_fails_before_training(tmp_path):
    result = run_cli("train", "tiny", "--output-dir", str(tmp_path / "run"), "--set", "train.stepz=3")
    assert result.returncode == 2
    assert "stepz" in result.stderr and "Fix:" in result.stderr
    assert not (tmp_path / "run").exists()


def test_demo_pushes_and_reloads_by_repo_id(tmp_path):
    result = run_cli("demo", "tiny", "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "reloaded EffhubTinyForImageClassification from effhub/tiny-demo" in result.stdout
    assert "OK: the reloaded model's outputs match" in result.stdout
    assert "effhub/tiny-demo" in result.stdout.split("[4/4]")[1]
