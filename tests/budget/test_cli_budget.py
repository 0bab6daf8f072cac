"""`effhub budget pilot|allocate` on a pool saved to disk, and their errors."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from effhub.cli import main


@pytest.fixture
def pool_dir(small_pool, tmp_path):
    pool, _ = small_pool
    folder = tmp_path / "pool"
    pool.with_format(None).save_to_disk(str(folder))
    return folder


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_pilot_then_allocate_with_taba(pool_dir, tmp_path):
    # the defaults: half of the budget, the same money on every task (10 each: 1 / 10 / 3 labels)
    code, out, _ = _run(["budget", "pilot", "--pool", str(pool_dir), "--tasks", "segmentation,depth,normals",
                         "--costs", "10,1,3", "--budget", "60", "--min-images", "1", "--output",
                         str(tmp_path / "pilot"), "--no-progress"])
    assert code == 0 and "segmentation 1, depth 10, normals 3" in out
    pilot = json.loads((tmp_path / "pilot" / "pilot.json").read_text())
    assert pilot["settings"]["labels"] == "equal_money" and pilot["settings"]["uncertainty"] == "gap"
    pilot["settings"]["steps"] = 3  # a quick pilot model for the test
    (tmp_path / "pilot" / "pilot.json").write_text(json.dumps(pilot))
    code, out, err = _run(["budget", "allocate", "--pool", str(pool_dir), "--pilot", str(tmp_path / "pilot"),
                           "--budget", "60", "--strategy", "taba", "--output", str(tmp_path / "a.json"),
                           "--no-progress"])
    assert code == 0, err
    assert "reconstruction" in out
    allocation = json.loads((tmp_path / "a.json").read_text())
    assert allocation["strategy"] == "taba" and sum(allocation["spend"].values()) <= 60
    for task, images in pilot["task_labels"].items():  # the pilot's labels are the allocation's first installment
        assert set(images) <= set(allocation["labels"][task])
    assert (tmp_path / "pilot" / "estimate.json").is_file()  # cached for the next budget


def test_allocate_heuristic_and_errors(pool_dir, tmp_path):
    code, out, _ = _run(["budget", "allocate", "--pool", str(pool_dir), "--tasks", "segmentation,depth",
                         "--costs", "10,1", "--budget", "100", "--strategy", "uniform_budget", "--output",
                         str(tmp_path / "a.json")])
    assert code == 0 and "uniform_budget" in out
    code, _, err = _run(["budget", "allocate", "--pool", str(pool_dir), "--tasks", "segmentation,depth",
                         "--costs", "10,1", "--budget", "0.5", "--strategy", "uniform_budget", "--output",
                         str(tmp_path / "b.json")])
    assert code == 2 and "below the cheapest label" in err and "Fix:" in err
    code, _, err = _run(["budget", "allocate", "--pool", str(pool_dir), "--tasks", "segmentation,albedo",
                         "--costs", "10,1", "--budget", "100", "--strategy", "uniform_budget", "--output",
                         str(tmp_path / "c.json")])
    assert code == 2 and "albedo" in err
    code, _, err = _run(["budget", "allocate", "--pool", str(pool_dir), "--tasks", "segmentation,depth",
                         "--costs", "10,-1", "--budget", "100", "--output", str(tmp_path / "d.json")])
    assert code == 2 and "positive" in err
    assert not (tmp_path / "b.json").exists() and not (tmp_path / "c.json").exists()


def test_budget_is_listed_as_a_tool():
    code, out, _ = _run(["methods", "--kind", "tool"])
    assert code == 0 and out.startswith("budget")


def test_equal_money_pilot_from_the_command_line(pool_dir, tmp_path):
    code, out, _ = _run(["budget", "pilot", "--pool", str(pool_dir), "--tasks", "segmentation,depth,normals",
                         "--costs", "10,1,3", "--fraction", "0.1", "--budget", "300", "--labels", "equal_money",
                         "--min-images", "1", "--output", str(tmp_path / "pilot"), "--no-progress"])
    assert code == 0 and "segmentation 1, depth 10, normals 3" in out
    pilot = json.loads((tmp_path / "pilot" / "pilot.json").read_text())
    assert pilot["settings"]["labels"] == "equal_money" and pilot["spend"] == 29
    assert all("\t" in line for line in (tmp_path / "pilot" / "images.txt").read_text().splitlines())
    code, _, err = _run(["budget", "pilot", "--pool", str(pool_dir), "--tasks", "segmentation,depth", "--costs",
                         "10,1", "--budget", "300", "--min-images", "0", "--output", str(tmp_path / "p2")])
    assert code != 0 and "--min-images" in err
