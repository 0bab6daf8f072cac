"""The `effhub` command line: train, eval, export, card, push, browse, hub serve, demo, convert, recipes, budget, methods,
and each method's own commands (`effhub <method> <command>`).

Method-specific work is looked up in the method registry (:mod:`effhub.registry`), so a new method folder brings its
own `train`/`eval`/`convert`/`demo` (and declares its extra options) without editing this file. This is the only
module that knows argparse: it turns flags into the typed options of `effhub.training.options`, which the methods
take. Commands that run models register effhub's classes with the Auto classes first (`integrate_all`); the others
start without importing torch.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from . import __version__
from .errors import EffhubError, TrainingInterrupted
from .training.options import ConvertOptions, DemoOptions, EvalOptions, RunOptions

# commands that load or train models: they need the Auto-class registrations
MODEL_COMMANDS = ("train", "eval", "convert", "demo", "export")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every `effhub train <method>` accepts (the method may add its own)."""
    parser.add_argument("--recipe", default="demo", help="shipped recipe name or path of a YAML file (default: demo)")
    parser.add_argument("--output-dir", type=Path, default=None, help="run folder (default: runs/<method>-<recipe>)")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset root for real-data recipes")
    parser.add_argument("--seed", type=int, default=None,
                        help="the run's seed (initial weights, data order); data generated from the recipe's seed "
                             "stay: --set seed=N changes both")
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default=None)
    parser.add_argument("--grad-accum", type=int, default=None, help="gradient accumulation steps")
    parser.add_argument("--log-with", nargs="*", default=None, help="trackers, e.g. tensorboard (jsonl always on)")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="save a resumable checkpoint every N steps")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output-dir: finished stages are skipped, the interrupted one "
                             "continues from its latest checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run that --output-dir holds (its files only; nothing else is touched)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value (repeatable; dotted keys for sections)")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="push the trained model when done")
    parser.add_argument("--hub-endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--no-progress", action="store_true", help="disable progress bars")


def _method_parser(parent, command: str, entry, help_text: str):
    parser = parent.add_parser(entry.name, help=f"{help_text} {entry.name}: {entry.description}")
    if command == "train":
        add_training_arguments(parser)
    for option in entry.options_of(command):
        parser.add_argument(f"--{option.name.replace('_', '-')}", dest=f"extra_{option.name}",
                            default=option.default, help=option.help)
    parser.set_defaults(entry=entry)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The CLI parser (light: method metadata only)."""
    from .registry import list_methods


    parser = argparse.ArgumentParser(prog="effhub", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"effhub {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also EFFHUB_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True)
    methods = list_methods()

    train = commands.add_parser("train", help="train a method on a recipe")
    train_methods = train.add_subparsers(dest="method", required=True)
    for entry in methods:
        if entry.train:
            _method_parser(train_methods, "train", entry, "train")

    evaluate = commands.add_parser("eval", help="evaluate a trained run folder")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--method", default=None, help="method name (default: read from the run folder)")
    evaluate.add_argument("--data-dir", type=Path, default=None)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--zero-shot", action="store_true", help="zero-shot evaluation where the method has one")
    evaluate.add_argument("--output", type=Path, default=None, help="write the metrics JSON here")

    convert = commands.add_parser("convert", help="convert an authors' checkpoint to an effhub model folder")
    convert_methods = convert.add_subparsers(dest="method", required=True)
    for entry in methods:
        if entry.convert:
            method_parser = _method_parser(convert_methods, "convert", entry, "convert")
            method_parser.add_argument("source", type=Path, help="the authors' checkpoint file")
            method_parser.add_argument("--recipe", required=True)
            method_parser.add_argument("--output", type=Path, required=True)
            method_parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                                       help="override a value of the recipe (repeatable)")

    export = commands.add_parser("export", help="write a trained run folder in another format (e.g. a plain CLIP)")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--format", required=True, help="the target format the method offers, e.g. clip")
    export.add_argument("--output", type=Path, required=True, help="the folder to write")
    export.add_argument("--method", default=None, help="method name (default: read from the run folder)")

    demo = commands.add_parser("demo", help="run a method's end-to-end demo on the embedded defaults")
    demo.add_argument("method", nargs="?", default=None, help="method (default: the flagship demo)")
    demo.add_argument("--output-dir", type=Path, default=Path("runs/demo"))
    demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a value of the demo recipe (repeatable), e.g. for a quicker run")

    card = commands.add_parser("card", help="(re)write the model card of a run folder from its evaluation JSON")
    card.add_argument("run_dir", type=Path)
    card.add_argument("--repo-id", default=None,
                      help="the repository the run is published as: shown in the card's usage code")

    push = commands.add_parser("push", help="push a model folder to a Hub repository (atomic: one commit)")
    push.add_argument("folder", type=Path)
    push.add_argument("repo_id")
    push.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
    push.add_argument("--private", action="store_true")
    push.add_argument("--commit-message", default=None)
    push.add_argument("--repo-type", choices=["model", "dataset"], default="model",
                      help="a dataset repository for a folder of results (tables, plots) without weights")

    browse = commands.add_parser("browse", help="list models on a Hub with their headline metrics")
    browse.add_argument("--endpoint", default=None)
    browse.add_argument("--search", default=None)
    browse.add_argument("--library", default="effhub", help="library filter ('' for all)")
    browse.add_argument("--tag", default=None)
    browse.add_argument("--limit", type=int, default=50)

    hub = commands.add_parser("hub", help="the local Hub (offline and test tool, not a Hub replacement)")
    hub_commands = hub.add_subparsers(dest="hub_command", required=True)
    serve = hub_commands.add_parser("serve", help="serve a file-backed Hub on loopback")
    serve.add_argument("--root", type=Path, default=Path(".effhub-hub"), help="folder holding the repositories")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    serve.add_argument("--tokens", type=Path, default=None, metavar="FILE",
                       help="JSON or YAML file of tokens with read/write rights per user or org (default: an open "
                            "single-user hub on loopback)")
    serve.add_argument("--allow-remote", action="store_true",
                       help="listen beyond loopback without --tokens (anyone who reaches it can write)")

    recipes = commands.add_parser("recipes", help="list or show shipped recipes")
    recipe_commands = recipes.add_subparsers(dest="recipes_command", required=True)
    recipes_list = recipe_commands.add_parser("list")
    recipes_list.add_argument("method", nargs="?", default=None)
    recipes_show = recipe_commands.add_parser("show")
    recipes_show.add_argument("method")
    recipes_show.add_argument("name")

    add_budget_arguments(commands)
    add_method_tools(commands, methods)

    methods_parser = commands.add_parser("methods", help="list the registered methods with their kind")
    methods_parser.add_argument("--kind", default=None, help="only methods of this kind (model, adapter, tool)")
    return parser


def add_budget_arguments(commands) -> None:
    """`effhub budget pilot|allocate|simulate`: the label budget allocation tool (`effhub.budget`)."""
    budget = commands.add_parser("budget", help="label budget allocation for multi-task learning (pilot, allocate, "
                                                "simulate)")
    budget_commands = budget.add_subparsers(dest="budget_command", required=True)

    def pool_arguments(parser):
        parser.add_argument("--pool", required=True,
                            help="the unlabeled pool: a dense data set name (scenes, nyuv2, cityscapes, taskonomy) or a "
                                 "folder written by datasets' save_to_disk")
        parser.add_argument("--split", default="train", help="the pool's split (default: train)")
        parser.add_argument("--data-dir", type=Path, default=None, help="the data folder of a real data set")
        parser.add_argument("--seed", type=int, default=0, help="seed of the random choices and the pilot model")
        parser.add_argument("--num-classes", type=int, default=None,
                            help="segmentation classes (default: from the data set)")
        parser.add_argument("--no-progress", action="store_true", help="disable progress bars")

    pilot = budget_commands.add_parser("pilot", help="choose the pilot labels for taba (images and their tasks)")
    pool_arguments(pilot)
    pilot.add_argument("--tasks", required=True, help="comma-separated tasks, e.g. segmentation,depth,normals")
    pilot.add_argument("--costs", required=True, help="comma-separated money per label, in task order, e.g. 10,1,3")
    pilot.add_argument("--fraction", type=float, default=None,
                       help="share of --budget the pilot spends (without --budget: share of the pool's images, or of "
                            "its full labelling cost with equal_money; default: the demo recipe's)")
    pilot.add_argument("--budget", type=float, default=None, help="the budget of the allocation to come")
    pilot.add_argument("--labels", choices=("every_task", "equal_money"), default=None,
                       help="every_task: a few images labelled for every task; equal_money: the same money on every "
                            "task, each on its own images (default: the demo recipe's)")
    pilot.add_argument("--min-images", type=int, default=None,
                       help="every_task: fewest pilot images; equal_money: fewest labels of the costliest task "
                            "(default: the demo recipe's)")
    pilot.add_argument("--uncertainty", choices=("heldout", "gap"), default=None,
                       help="what taba reads as a task's error left to learn: heldout, the pilot model's held-out "
                            "loss; gap, its held-out loss beyond its training loss (default: the demo recipe's)")
    pilot.add_argument("--output", type=Path, required=True, help="folder for pilot.json and images.txt")

    allocate = budget_commands.add_parser("allocate", help="allocate a label budget over the pool")
    pool_arguments(allocate)
    allocate.add_argument("--budget", type=float, required=True, help="the money to spend, in the unit of --costs")
    allocate.add_argument("--strategy", default="taba",
                          help="taba (needs --pilot), uniform_count, uniform_budget, cost_proportional, inverse_cost, "
                               "full_labeling, disjoint, random, single:<task>")
    allocate.add_argument("--pilot", type=Path, default=None, help="the pilot folder (taba)")
    allocate.add_argument("--tasks", default=None, help="comma-separated tasks (default: the pilot's)")
    allocate.add_argument("--costs", default=None, help="comma-separated costs (default: the pilot's)")
    allocate.add_argument("--output", type=Path, required=True, help="the allocation JSON to write")

    simulate = budget_commands.add_parser("simulate", help="train under each allocation: score against budget")
    simulate.add_argument("--recipe", default="demo", help="shipped recipe name or YAML path (default: demo)")
    simulate.add_argument("--output", type=Path, default=Path("runs/budget"), help="the simulation folder")
    simulate.add_argument("--data-dir", type=Path, default=None, help="the data folder of a real-data recipe")
    simulate.add_argument("--workers", type=int, default=None, help="cells trained at once (default: CPU cores)")
    simulate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="override a recipe value (repeatable), e.g. budgets=[500,2000]")
    simulate.add_argument("--overwrite", action="store_true",
                          help="discard an earlier simulation in --output (default: resume it)")
    simulate.add_argument("--no-progress", action="store_true", help="disable the progress bar")


def add_method_tools(commands, methods) -> None:
    """`effhub <method> <command> --flags` for the commands a method declares (`MethodEntry.tools`)."""
    for entry in methods:
        if not entry.tools:
            continue
        parser = commands.add_parser(entry.name, help=f"{entry.name}'s own commands")
        tools = parser.add_subparsers(dest="tool", required=True)
        for tool in entry.tools:
            tool_parser = tools.add_parser(tool.name, help=tool.help)
            for option in entry.options_of(tool.name):
                tool_parser.add_argument(f"--{option.name.replace('_', '-')}", dest=f"extra_{option.name}",
                                         default=option.default, required=option.required, help=option.help,
                                         metavar=option.name.upper())
            tool_parser.set_defaults(entry=entry, tool_entry=tool)


def _split_list(text: str | None, what: str) -> list[str] | None:
    from .errors import ConfigError

    if text is None:
        return None
    values = [value.strip() for value in text.split(",") if value.strip()]
    if not values:
        raise ConfigError(f"--{what} is empty", f"pass comma-separated {what}")
    return values


def _load_pool(args: argparse.Namespace):
    """`--pool`: a dense data set's name (read with `--data-dir`), or a folder written by `Dataset.save_to_disk`."""
    from .data import load_dataset

    folder = Path(args.pool)
    if (folder / "dataset_info.json").is_file() or (folder / "state.json").is_file():
        import datasets

        pool = datasets.load_from_disk(str(folder))
        columns = [c for c in ("image", "segmentation", "depth", "normals", "keypoints", "edges")
                   if c in pool.column_names]
        return pool.with_format("numpy", columns=columns, output_all_columns=True)
    return load_dataset(args.pool, args.split, root=args.data_dir, kind="dense")


def _run_budget(args: argparse.Namespace) -> int:
    """`effhub budget ...` (see `effhub.budget`)."""
    from .errors import ConfigError

    progress = False if getattr(args, "no_progress", False) else None
    if args.budget_command == "simulate":
        from .budget.simulation import simulate
        from .recipes import load_recipe

        recipe = load_recipe("budget", args.recipe, args.overrides)
        result = simulate(recipe, args.output, data_dir=args.data_dir, workers=args.workers,
                          overwrite=args.overwrite, progress=progress)
        print("Delta_T (%) against the model trained on every label (same seed); mean ± spread over seeds")
        print(result.table)
        for strategy, check in result.summary["testbed"].items():
            print(f"test-bed check ({strategy}): rises with budget: {check['rises_with_budget']}, "
                  f"above the constant prediction: {check['above_trivial']}")
        print(f"effhub: simulation written to {args.output}")
        return 0

    from .budget.pilot import Pilot, pilot_settings, plan_pilot

    pool = _load_pool(args)
    if args.budget_command == "pilot":
        settings = pilot_settings(num_classes=args.num_classes)
        if args.labels is not None:
            settings["labels"] = args.labels
        if args.uncertainty is not None:
            settings["uncertainty"] = args.uncertainty
        if args.min_images is not None:
            if args.min_images < 1:
                raise ConfigError(f"--min-images {args.min_images} is below 1", "pass 1 or more")
            settings["min_images"] = args.min_images
        pilot = plan_pilot(pool, _split_list(args.tasks, "tasks"), _split_list(args.costs, "costs"),
                           fraction=args.fraction, budget=args.budget, seed=args.seed, output=args.output,
                           settings=settings)
        counts = ", ".join(f"{task} {len(pilot.labels_of(task))}" for task in pilot.tasks)
        print(f"effhub: {len(pilot.image_ids)} pilot image(s) to label ({counts}; cost {pilot.spend:g}): "
              f"{args.output / 'images.txt'} (an id alone: every task; else the id, a tab and its tasks)")
        return 0
    from .budget import BudgetProblem, allocate

    pilot = Pilot.load(args.pilot) if args.pilot is not None else None
    tasks = _split_list(args.tasks, "tasks") or (list(pilot.tasks) if pilot else None)
    costs = _split_list(args.costs, "costs") or (dict(pilot.costs) if pilot else None)
    if tasks is None or costs is None:
        raise ConfigError("allocate needs the tasks and their costs", "pass --tasks and --costs, or --pilot")
    if pilot is not None and args.num_classes is not None:
        pilot.settings["num_classes"] = args.num_classes
    problem = BudgetProblem(tasks=tasks, costs=costs, budget=args.budget)
    allocation = allocate(problem, pool, args.strategy, pilot=pilot, seed=args.seed, progress=progress)
    allocation.save(args.output)
    print(allocation.summary())
    if allocation.strategy == "taba":
        print(f"note: {allocation.details['note']}")
    print(f"effhub: allocation written to {args.output}")
    return 0


def _extra(args: argparse.Namespace) -> dict:
    """The values of a method's declared options (`MethodOption`), by option name."""
    return {key[len("extra_"):]: value for key, value in vars(args).items() if key.startswith("extra_")}


def run_options(args: argparse.Namespace) -> RunOptions:
    """`RunOptions` from the flags of `effhub train <method>`."""
    output_dir = args.output_dir or Path("runs") / f"{args.method}-{Path(str(args.recipe)).stem}"
    values = {"output_dir": output_dir, "seed": args.seed, "data_dir": args.data_dir, "resume": args.resume,
              "overwrite": args.overwrite,
              "progress": not args.no_progress, "push_to_hub": args.push_to_hub, "hub_endpoint": args.hub_endpoint,
              "extra": {key: value for key, value in _extra(args).items() if value is not None}}
    for name in ("mixed_precision", "grad_accum", "log_with", "checkpoint_every"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return RunOptions(**values)


def _run(args: argparse.Namespace) -> int:
    from .registry import get_method, integrate_all, list_methods

    if args.command in MODEL_COMMANDS:
        integrate_all()
    if args.command == "train":
        from .recipes import load_recipe

        recipe = load_recipe(args.method, args.recipe, args.overrides)
        options = run_options(args)
        output_dir = args.entry.load("train")(recipe, options)
        if not _is_main_rank():
            return 0
        print(f"effhub: run written to {output_dir}")
        if options.push_to_hub:
            from .hub.publish import push_folder

            print(f"effhub: pushed to {push_folder(output_dir, options.push_to_hub, endpoint=options.hub_endpoint)}")
        return 0
    if args.command == "eval":
        method = _method_of_run(args.run_dir, args.method)
        options = EvalOptions(data_dir=args.data_dir, split=args.split, zero_shot=args.zero_shot)
        metrics = get_method(method).load("evaluate")(args.run_dir, options)
        text = json.dumps(metrics, indent=2, sort_keys=True)
        if args.output:
            args.output.write_text(text + "\n")
        print(text)
        return 0
    if args.command == "convert":
        options = ConvertOptions(recipe=args.recipe, output=args.output, overrides=args.overrides,
                                 extra=_extra(args))
        output = args.entry.load("convert")(args.source, options)
        print(f"effhub: converted checkpoint written to {output}")
        return 0
    if args.command == "export":
        method = _method_of_run(args.run_dir, args.method)
        output = get_method(method).load("export")(args.run_dir, args.format, args.output)
        print(f"effhub: exported {args.run_dir} as {args.format} to {output}")
        return 0
    if getattr(args, "tool_entry", None) is not None:
        import importlib

        integrate_all()
        module_name, _, function_name = args.tool_entry.run.partition(":")
        return int(getattr(importlib.import_module(module_name), function_name)(_extra(args)) or 0)
    if args.command == "demo":
        name = args.method or _flagship_demo()
        return int(get_method(name).load("demo")(DemoOptions(output_dir=args.output_dir,
                                                               overrides=args.overrides)) or 0)
    if args.command == "card":
        from .hub.cards import rewrite_card

        print(f"effhub: card written to {rewrite_card(args.run_dir, repo_id=args.repo_id)}")
        return 0
    if args.command == "push":
        from .hub.publish import push_folder

        url = push_folder(args.folder, args.repo_id, endpoint=args.endpoint, private=args.private,
                          commit_message=args.commit_message, repo_type=args.repo_type)
        print(f"effhub: pushed {args.folder} to {url}")
        return 0
    if args.command == "browse":
        from .hub.browse import browse_models, format_table

        rows = browse_models(endpoint=args.endpoint, search=args.search, library=args.library or None,
                             tag=args.tag, limit=args.limit)
        print(format_table(rows))
        return 0
    if args.command == "hub":
        from .hub.server import serve

        serve(root=args.root, host=args.host, port=args.port, tokens_file=args.tokens,
              allow_remote=args.allow_remote)
        return 0
    if args.command == "recipes":
        from .recipes import list_recipes, read_recipe_file

        if args.recipes_command == "list":
            for method, names in list_recipes(args.method).items():
                print(f"{method}: {', '.join(names)}")
        else:
            mapping, source = read_recipe_file(args.method, args.name)
            print(f"# {source}")
            import yaml

            print(yaml.safe_dump(mapping, sort_keys=False), end="")
        return 0
    if args.command == "budget":
        return _run_budget(args)
    if args.command == "methods":
        for entry in list_methods(args.kind):
            print(f"{entry.name:14s} {entry.kind:8s} {entry.description}  [{', '.join(entry.commands)}]")
        return 0
    raise AssertionError(args.command)


def _is_main_rank() -> bool:
    # under `accelerate launch` every rank runs the CLI; only rank 0 reports and pushes
    return int(os.environ.get("RANK", "0")) == 0


FLAGSHIP_DEMOS = ("adashare", "tiny")


def _flagship_demo() -> str:
    from .registry import list_methods

    with_demo = {entry.name for entry in list_methods() if entry.demo}
    for name in FLAGSHIP_DEMOS:
        if name in with_demo:
            return name
    return sorted(with_demo)[0]


def _method_of_run(run_dir: Path, asked: str | None = None) -> str:
    """The method that wrote `run_dir` (checked against `--method` when given)."""
    from .errors import CheckpointError, ConfigError
    from .training.layout import RunLayout

    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run folder '{run_dir}' does not exist", "pass the --output-dir of an effhub train run")
    info = RunLayout(run_dir).read_run_info()
    recorded = info.get("method") if isinstance(info, dict) else None
    if not recorded:
        if asked:
            return asked
        raise CheckpointError(f"'{run_dir}/run_info.json' names no method",
                              "pass --method, or evaluate a folder written by `effhub train`")
    if asked and asked != recorded:
        raise ConfigError(f"'{run_dir}' is a '{recorded}' run, not a '{asked}' run",
                          f"drop --method (or pass --method {recorded})")
    return recorded


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; effhub errors print one clear line (the problem and the fix) and exit with status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("EFFHUB_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        return _run(args)
    except TrainingInterrupted as error:
        if debug:
            raise
        words = [word for word in argv if word != "--overwrite"] + ["--resume"] * ("--resume" not in argv)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under accelerate launch: the same launch, -m effhub.train
            resume = "accelerate launch <the same launch options> -m effhub.train " + shlex.join(words[1:])
        else:
            resume = "effhub " + shlex.join(words)
        if _is_main_rank():
            print(f"effhub: {error.problem}.\neffhub: resume with: {resume}", file=sys.stderr)
        return 130
    except EffhubError as error:
        if debug:
            raise
        print(f"effhub: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
