"""Run folders are owned: another run is refused, --overwrite replaces only the previous run's files, an interrupted
run stops with a checkpoint and the exact --resume command; `effhub eval` on broken run folders says what is wrong."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from effhub.cli import main

TINY = ["--recipe", "demo", "--no-progress", "--set", "train.steps=4", "--set", "data.train_samples=64",
        "--set", "data.test_samples=32"]


def _train(folder, *extra):
    return main(["train", "tiny", "--output-dir", str(folder), *TINY, *extra])


def _snapshot(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


def test_a_folder_holding_another_run_is_refused_and_left_untouched(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run) == 0
    before = _snapshot(run)
    info = json.loads((run / "run_info.json").read_text())
    assert info["finished"] is True and {"model.safetensors", "config.json", "run_info.json"} <= set(info["files"])
    capsys.readouterr()
    # another method into the same folder (the data-loss case), and the same method without --resume/--overwrite
    assert main(["train", "adashare", "--recipe", "demo", "--output-dir", str(run), "--no-progress"]) == 2
    first = capsys.readouterr().err
    assert _train(run) == 2
    second = capsys.readouterr().err
    for message in (first, second):
        assert "already holds a finished 'tiny' run" in message and "--overwrite" in message
        assert "Traceback" not in message and len(message.strip().splitlines()) == 1
    assert _snapshot(run) == before


def test_overwrite_replaces_the_run_and_nothing_else(tmp_path):
    run = tmp_path / "run"
    assert _train(run) == 0
    (run / "notes.txt").write_text("mine")  # a file the run did not write
    old = load_file(str(run / "model.safetensors"))
    assert _train(run, "--overwrite", "--seed", "5") == 0
    assert (run / "notes.txt").read_text() == "mine"
    new = load_file(str(run / "model.safetensors"))
    assert any(not torch.equal(old[key], new[key]) for key in old)
    info = json.loads((run / "run_info.json").read_text())
    assert info["seed"] == 5 and "notes.txt" not in info["files"] and "resumes" not in info


def test_resume_of_another_method_and_of_an_empty_folder_are_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run) == 0
    capsys.readouterr()
    assert main(["train", "adashare", "--recipe", "demo", "--output-dir", str(run), "--resume", "--no-progress"]) == 2
    assert "not a 'adashare' run" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.bin").write_bytes(b"x")
    assert _train(foreign) == 2
    assert "holds no effhub run" in capsys.readouterr().err
    assert _train(foreign, "--resume") == 2
    assert "no effhub run to resume" in capsys.readouterr().err
    assert sorted(path.name for path in foreign.iterdir()) == ["data.bin"]
    assert _train(run, "--resume", "--overwrite") == 2
    assert "not both" in capsys.readouterr().err


def test_resume_with_another_recipe_is_refused_and_names_the_differences(tmp_path, capsys):
    """A resume records its stages under the recipe that started the run: another recipe (here one --set more) is
    refused before anything is written, naming what differs."""
    run = tmp_path / "run"
    assert _train(run) == 0
    before = _snapshot(run)
    capsys.readouterr()
    assert _train(run, "--resume", "--set", "train.steps=5") == 2
    error = capsys.readouterr().err
    assert "started with another recipe" in error and "train.steps: 4 -> 5" in error
    assert _snapshot(run) == before
    assert _train(run, "--resume") == 0  # the same recipe resumes


@pytest.mark.parametrize("signal_name", ["SIGINT", pytest.param("SIGTERM", marks=pytest.mark.slow)])
def test_interrupt_stops_with_a_checkpoint_and_prints_the_resume_command(tmp_path, signal_name):
    """Ctrl-C (or SIGTERM) in the middle of training: one message with the exact command, a checkpoint of the last
    step, exit 130; that command ends the run with the weights of an uninterrupted one."""
    run = tmp_path / "run"
    argv = ["train", "tiny", "--output-dir", str(run), "--recipe", "demo", "--no-progress",
            "--set", "train.steps=1000", "--set", "data.train_samples=64", "--set", "data.test_samples=32",
            "--checkpoint-every", "50"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "effhub", *argv], env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    stage = run / "checkpoints" / "train"
    while not any(stage.glob("checkpoint-*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(getattr(signal, signal_name))
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert f"training stopped on {signal_name}" in stderr
    command = stderr.strip().splitlines()[-1]
    assert command.startswith("effhub: resume with: effhub train tiny") and command.endswith("--resume")
    info = json.loads((run / "run_info.json").read_text())
    assert info["finished"] is False
    assert not json.loads((run / "checkpoints" / "stages.json").read_text() if (run / "checkpoints" /
                                                                             "stages.json").is_file() else "{}")
    resumed = subprocess.run([sys.executable, "-m", "effhub", *command.split("resume with: effhub ")[1].split()],
                             env=environment, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    reference = tmp_path / "reference"
    uninterrupted = subprocess.run([sys.executable, "-m", "effhub", *argv[:3], str(reference), *argv[4:]],
                                   env=environment, capture_output=True, text=True, timeout=600)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    expected, actual = load_file(str(reference / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert max((expected[key] - actual[key]).abs().max().item() for key in expected) <= 1e-6
    assert json.loads((run / "run_info.json").read_text())["finished"] is True


def test_eval_on_broken_run_folders_says_what_is_wrong(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run) == 0
    capsys.readouterr()
    cases = []
    assert main(["eval", str(tmp_path / "missing")]) == 2
    cases.append(("does not exist", capsys.readouterr().err))
    assert main(["eval", str(run), "--method", "adashare"]) == 2
    cases.append(("is a 'tiny' run, not a 'adashare' run", capsys.readouterr().err))
    info = json.loads((run / "run_info.json").read_text())
    del info["method"]
    (run / "run_info.json").write_text(json.dumps(info))
    assert main(["eval", str(run)]) == 2
    cases.append(("names no method", capsys.readouterr().err))
    (run / "run_info.json").write_text("{not json")
    assert main(["eval", str(run)]) == 2
    cases.append(("cannot be read", capsys.readouterr().err))
    for expected, message in cases:
        assert expected in message and "Fix:" in message and "Traceback" not in message, message


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    from effhub.errors import CheckpointError

    with pytest.raises(CheckpointError):
        main(["--debug", "eval", str(tmp_path / "missing")])
    monkeypatch.setenv("EFFHUB_DEBUG", "1")
    with pytest.raises(CheckpointError):
        main(["eval", str(tmp_path / "missing")])
