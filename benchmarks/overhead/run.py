"""`python -m benchmarks overhead`: what effhub's library layer costs, measured side by side in one run.

1. Training step time: the run layer (`Run.train_stage`, one phase, no checkpoints) against a bare PyTorch loop on the
   same model (the AdaShare demo model), data (the generated scenes and the recipe's collator), batch size and
   optimiser. A step's time is the gap between the ends of two consecutive steps (the run layer's from its step log,
   the loop's from its own clock), so the run's one-off start (accelerator, run_info.json) is not a step's cost; the
   first step of each is left out. Target: at most 10% slower, on the median step over alternating repeats.
2. Loading: `AdaShareModel.from_pretrained(folder)` against building the module and loading its safetensors by hand,
   for the demo model and for the paper's NYU-v2 3-task model. Target: at most 1.5x. Also printed: the fastest
   hand-written load (module built on the meta device, weights assigned, no initialisation).
3. Command-line start: `effhub --help` and `effhub methods` against `python -c "import torch, transformers"` and
   against the command line of the code before the run layer (a git worktree of `--before`, default the last commit
   before it). Target: under half of that CLI's time.

Writes a table to stdout and `benchmarks/results/overhead.json`. Every figure below a target is reported as met,
every other as MISSED.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from effhub.tables import text_table

RESULTS = Path(__file__).resolve().parent.parent / "results" / "overhead.json"
REPO = Path(__file__).resolve().parents[2]
# the landed code before the run layer (its CLI imported every method, torch included, before parsing)
BEFORE_REVISION = "cbf703c"


def _adashare_setup(steps: int):
    import torch

    from effhub.models.adashare.modeling_adashare import AdaShareModel
    from effhub.models.adashare.training_adashare import load_datasets, make_collator
    from effhub.recipes import load_recipe

    recipe = load_recipe("adashare", "demo")
    train_set, _ = load_datasets(recipe)
    train_set = train_set.select(range(min(len(train_set), recipe.batch_size * steps)))
    config = recipe.model_config()
    collate = make_collator(recipe, config.task_names, True)
    torch.manual_seed(0)
    initial = AdaShareModel(config).state_dict()

    def fresh_model():
        model = AdaShareModel(config)
        model.load_state_dict(initial)
        return model

    def optimizer(params):
        return torch.optim.Adam(params, lr=recipe.lr, betas=(0.5, 0.999))

    return recipe, train_set, collate, fresh_model, optimizer


def _loss(model, batch):
    return model(batch["pixel_values"], labels=batch["labels"], label_mask=batch["label_mask"],
                 policy_mode="shared").loss


def bare_loop_seconds(train_set, collate, fresh_model, optimizer, batch_size: int, steps: int) -> list[float]:
    """Seconds of each optimizer step (after the first) of a plain PyTorch loop (DataLoader, forward, backward,
    step)."""
    import torch
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    model = fresh_model().train()
    opt = optimizer(model.parameters())
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, collate_fn=collate, drop_last=True)
    ends = []
    while len(ends) < steps:
        for batch in loader:
            opt.zero_grad(set_to_none=True)
            _loss(model, batch).backward()
            opt.step()
            ends.append(time.time())
            if len(ends) == steps:
                break
    return [b - a for a, b in zip(ends, ends[1:])]


def run_layer_seconds(train_set, collate, fresh_model, optimizer, batch_size: int, steps: int,
                      folder: Path) -> list[float]:
    """Seconds of each optimizer step (after the first) through `Run.train_stage` (one phase, logs on, no
    checkpoints), from the step log's time stamps."""
    from effhub.training import Phase, Run, RunOptions, Update, read_metrics_log

    phase = Phase("train", steps=steps, batch_size=batch_size, updates=[Update(
        "weights", dataset="train", loss=lambda model, batch, ctx: _loss(model, batch),
        parameters=lambda model: model.parameters(), optimizer=optimizer)])
    shutil.rmtree(folder, ignore_errors=True)
    with Run(RunOptions(output_dir=folder, progress=False), method="benchmark", seed=0) as run:
        run.train_stage("train", fresh_model(), [phase], {"train": train_set}, collate_fn=collate,
                        phase_end_checkpoints=False)
    ends = [record["time"] for record in read_metrics_log(run.layout.metrics_log) if "phase" in record]
    return [b - a for a, b in zip(ends, ends[1:])]


def loading_seconds(folder: Path, repeats: int) -> dict[str, float]:
    """Median seconds of `from_pretrained` and of building the module + loading its safetensors by hand."""
    from safetensors.torch import load_file

    from effhub.models.adashare.configuration_adashare import AdaShareConfig
    from effhub.models.adashare.modeling_adashare import AdaShareModel

    AdaShareModel.from_pretrained(folder)  # untimed: first-use imports and caches
    import torch

    pretrained, by_hand, on_meta = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        AdaShareModel.from_pretrained(folder)
        pretrained.append(time.perf_counter() - started)
        started = time.perf_counter()
        model = AdaShareModel(AdaShareConfig.from_json_file(str(folder / "config.json")))
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        by_hand.append(time.perf_counter() - started)
        started = time.perf_counter()  # the fastest hand-written way: no initialisation at all
        with torch.device("meta"):
            model = AdaShareModel(AdaShareConfig.from_json_file(str(folder / "config.json")))
        model.load_state_dict(load_file(str(folder / "model.safetensors")), assign=True)
        on_meta.append(time.perf_counter() - started)
    return {"from_pretrained": statistics.median(pretrained), "by_hand": statistics.median(by_hand),
            "by_hand_on_meta": statistics.median(on_meta),
            "tensors": len(load_file(str(folder / "model.safetensors"))),
            "megabytes": (folder / "model.safetensors").stat().st_size / 2**20}


def _command_seconds(command: list[str], repeats: int, env: dict | None = None, cwd: Path | None = None) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env, cwd=cwd)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cli_seconds(repeats: int, before: str) -> dict[str, float | None]:
    """Median start-to-exit seconds of the CLI commands, the import baseline and the CLI before the run layer."""
    effhub = shutil.which("effhub") or str(Path(sys.executable).with_name("effhub"))
    result: dict[str, float | None] = {
        "effhub --help": _command_seconds([effhub, "--help"], repeats),
        "effhub methods": _command_seconds([effhub, "methods"], repeats),
        "import torch, transformers": _command_seconds([sys.executable, "-c", "import torch, transformers"],
                                                       repeats),
    }
    worktree = Path(tempfile.mkdtemp(prefix="effhub-before-"))
    try:
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), before], check=True,
                       capture_output=True)
        env = {**os.environ, "PYTHONPATH": str(worktree / "src")}
        for name, argv in (("before: effhub --help", "['--help']"), ("before: effhub methods", "['methods']")):
            code = f"import sys; from effhub.cli import main\ntry: main({argv})\nexcept SystemExit: pass"
            result[name] = _command_seconds([sys.executable, "-c", code], repeats, env=env, cwd=worktree)
    except (subprocess.CalledProcessError, FileNotFoundError) as error:
        print(f"(the CLI before the run layer could not be measured: {error})")
        result["before: effhub --help"] = result["before: effhub methods"] = None
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], capture_output=True)
        shutil.rmtree(worktree, ignore_errors=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per timed training (default 40)")
    parser.add_argument("--repeats", type=int, default=None, help="alternating repeats (default 5)")
    parser.add_argument("--before", default=BEFORE_REVISION, help="git revision of the CLI to compare with")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    steps = args.steps or (15 if args.quick else 40)
    repeats = args.repeats or (3 if args.quick else 5)

    import torch

    recipe, train_set, collate, fresh_model, optimizer = _adashare_setup(steps)
    bare, layer = [], []
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        # warm-up (allocator, thread pools), untimed
        bare_loop_seconds(train_set, collate, fresh_model, optimizer, recipe.batch_size, 3)
        for _ in range(repeats):  # alternate, so that load on a shared machine hits both alike
            bare += bare_loop_seconds(train_set, collate, fresh_model, optimizer, recipe.batch_size, steps)
            layer += run_layer_seconds(train_set, collate, fresh_model, optimizer, recipe.batch_size, steps,
                                       workdir / "run")
        loading = {}
        from effhub.models.adashare.modeling_adashare import AdaShareModel
        from effhub.recipes import load_recipe

        for name, config in (("demo", recipe.model_config()),
                             ("nyuv2-3task", load_recipe("adashare", "nyuv2-3task").model_config())):
            model_dir = workdir / f"model-{name}"
            AdaShareModel(config).save_pretrained(model_dir)
            loading[name] = loading_seconds(model_dir, repeats=3 * repeats)
    cli = cli_seconds(repeats, args.before)

    step_ratio = statistics.median(layer) / statistics.median(bare)
    targets = {"training step (run layer / bare loop)": (step_ratio, 1.10)}
    for name, seconds in loading.items():
        targets[f"from_pretrained / by hand ({name})"] = (seconds["from_pretrained"] / seconds["by_hand"], 1.5)
    for command in ("--help", "methods"):
        before = cli.get(f"before: effhub {command}")
        if before:
            targets[f"effhub {command} / before"] = (cli[f"effhub {command}"] / before, 0.5)
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "quick": args.quick, "steps": steps, "repeats": repeats, "batch_size": recipe.batch_size,
        "model": "AdaShare demo (dilated ResNet-18, width 8, 3 tasks, 64x64 scenes)",
        "step_seconds": {"bare_loop": bare, "run_layer": layer},
        "loading_seconds": loading, "cli_seconds": cli, "before_revision": args.before,
        "ratios": {name: {"value": value, "target": target, "met": value <= target}
                   for name, (value, target) in targets.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nlibrary overhead ({result['machine']}; medians over {repeats} alternating repeats)")
    print(text_table([("measure", "effhub", "baseline", "ratio", "target", "")] + [
        ("training, s per step", f"{statistics.median(layer):.4f}", f"{statistics.median(bare):.4f}",
         f"{step_ratio:.3f}", "<= 1.10", "met" if step_ratio <= 1.10 else "MISSED"),
    ] + [
        (f"loading {name} ({seconds['tensors']} tensors, {seconds['megabytes']:.1f} MB), s",
         f"{seconds['from_pretrained']:.4f}", f"{seconds['by_hand']:.4f}",
         f"{targets[f'from_pretrained / by hand ({name})'][0]:.2f}", "<= 1.5",
         "met" if targets[f"from_pretrained / by hand ({name})"][0] <= 1.5 else "MISSED")
        for name, seconds in loading.items()
    ] + [
        (f"effhub {command}, s", f"{cli[f'effhub {command}']:.3f}",
         f"{cli[f'before: effhub {command}']:.3f}" if cli.get(f"before: effhub {command}") else "n/a",
         f"{targets[f'effhub {command} / before'][0]:.3f}" if f"effhub {command} / before" in targets else "n/a",
         "< 0.5", ("met" if targets[f"effhub {command} / before"][0] < 0.5 else "MISSED")
         if f"effhub {command} / before" in targets else "n/a")
        for command in ("--help", "methods")
    ]))
    for name, seconds in loading.items():
        print(f"loading {name} by hand on the meta device with assign=True (no initialisation at all): "
              f"{seconds['by_hand_on_meta']:.4f} s; from_pretrained / that = "
              f"{seconds['from_pretrained'] / seconds['by_hand_on_meta']:.2f}")
    print(f"python -c 'import torch, transformers': {cli['import torch, transformers']:.3f} s")
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
