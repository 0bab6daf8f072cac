"""The `effhub` command line: train, eval, card, push, browse, hub serve, demo, convert, recipes, methods.

Method-specific work is looked up in the method registry (:mod:`effhub.registry`), so a new method folder brings its
own `train`/`eval`/`convert`/`demo` without editing this file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from .errors import EffhubError

RUN_INFO_FILE = "run_info.json"


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every `effhub train <method>` accepts (the method may add its own)."""
    parser.add_argument("--recipe", default="demo", help="shipped recipe name or path of a YAML file (default: demo)")
    parser.add_argument("--output-dir", type=Path, default=None, help="run folder (default: runs/<method>-<recipe>)")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset root for real-data recipes")
    parser.add_argument("--seed", type=int, default=None, help="overrides the recipe's seed")
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default=None)
    parser.add_argument("--grad-accum", type=int, default=None, help="gradient accumulation steps")
    parser.add_argument("--log-with", nargs="*", default=None, help="trackers, e.g. tensorboard (jsonl always on)")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="save a resumable checkpoint every N steps")
    parser.add_argument("--resume", action="store_true", help="resume from the latest checkpoint in --output-dir")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value (repeatable; dotted keys for sections)")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="push the trained model when done")
    parser.add_argument("--hub-endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--no-progress", action="store_true", help="disable progress bars")


def _method_parser(parent, command: str, entry, attribute: str, help_text: str, method_arguments: bool = True):
    parser = parent.add_parser(entry.name, help=f"{help_text} {entry.name}: {entry.description}")
    if command == "train":
        add_training_arguments(parser)
    if entry.add_cli_arguments and method_arguments:
        entry.load("add_cli_arguments")(parser, command)
    parser.set_defaults(entry=entry, entry_attribute=attribute)
    return parser


METHOD_COMMANDS = ("train", "convert")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; method-specific flags are imported only when `command` needs them (or is unknown)."""
    from .registry import list_methods

    method_arguments = command is None or command in METHOD_COMMANDS

    parser = argparse.ArgumentParser(prog="effhub", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"effhub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    methods = list_methods()

    train = commands.add_parser("train", help="train a method on a recipe")
    train_methods = train.add_subparsers(dest="method", required=True)
    for entry in methods:
        _method_parser(train_methods, "train", entry, "train", "train", method_arguments)

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
            method_parser = _method_parser(convert_methods, "convert", entry, "convert", "convert", method_arguments)
            method_parser.add_argument("source", type=Path, help="the authors' checkpoint file")
            method_parser.add_argument("--recipe", required=True)
            method_parser.add_argument("--output", type=Path, required=True)

    demo = commands.add_parser("demo", help="run a method's end-to-end demo on the embedded defaults")
    demo.add_argument("method", nargs="?", default=None, help="method (default: the flagship demo)")
    demo.add_argument("--output-dir", type=Path, default=Path("runs/demo"))
    demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a value of the demo recipe (repeatable), e.g. for a quicker run")

    card = commands.add_parser("card", help="(re)write the model card of a run folder from its evaluation JSON")
    card.add_argument("run_dir", type=Path)

    push = commands.add_parser("push", help="push a model folder to a Hub repository (atomic: one commit)")
    push.add_argument("folder", type=Path)
    push.add_argument("repo_id")
    push.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
    push.add_argument("--private", action="store_true")
    push.add_argument("--commit-message", default=None)

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

    recipes = commands.add_parser("recipes", help="list or show shipped recipes")
    recipe_commands = recipes.add_subparsers(dest="recipes_command", required=True)
    recipes_list = recipe_commands.add_parser("list")
    recipes_list.add_argument("method", nargs="?", default=None)
    recipes_show = recipe_commands.add_parser("show")
    recipes_show.add_argument("method")
    recipes_show.add_argument("name")

    commands.add_parser("methods", help="list the registered methods")
    return parser


def _run(args: argparse.Namespace) -> int:
    from .registry import get_method, list_methods

    if args.command == "train":
        from .recipes import load_recipe

        recipe = load_recipe(args.method, args.recipe, args.overrides)
        if args.output_dir is None:
            args.output_dir = Path("runs") / f"{args.method}-{Path(str(args.recipe)).stem}"
        output_dir = args.entry.load("train")(recipe, args)
        if not _is_main_rank():
            return 0
        print(f"effhub: run written to {output_dir}")
        if args.push_to_hub:
            from .hub.publish import push_folder

            print(f"effhub: pushed to {push_folder(output_dir, args.push_to_hub, endpoint=args.hub_endpoint)}")
        return 0
    if args.command == "eval":
        method = args.method or _method_of_run(args.run_dir)
        metrics = get_method(method).load("evaluate")(args.run_dir, args)
        text = json.dumps(metrics, indent=2, sort_keys=True)
        if args.output:
            args.output.write_text(text + "\n")
        print(text)
        return 0
    if args.command == "convert":
        output = args.entry.load("convert")(args.source, args)
        print(f"effhub: converted checkpoint written to {output}")
        return 0
    if args.command == "demo":
        name = args.method or _flagship_demo()
        return int(get_method(name).load("demo")(args) or 0)
    if args.command == "card":
        from .hub.cards import rewrite_card

        print(f"effhub: card written to {rewrite_card(args.run_dir)}")
        return 0
    if args.command == "push":
        from .hub.publish import push_folder

        url = push_folder(args.folder, args.repo_id, endpoint=args.endpoint, private=args.private,
                          commit_message=args.commit_message)
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

        serve(root=args.root, host=args.host, port=args.port)
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
    if args.command == "methods":
        for entry in list_methods():
            supports = [a for a in ("train", "evaluate", "convert", "demo") if getattr(entry, a)]
            print(f"{entry.name:14s} {entry.description}  [{', '.join(supports)}]")
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


def _method_of_run(run_dir: Path) -> str:
    info = Path(run_dir) / RUN_INFO_FILE
    if not info.is_file():
        from .errors import CheckpointError

        raise CheckpointError(f"'{run_dir}' has no {RUN_INFO_FILE}", "pass an effhub run folder or --method")
    return json.loads(info.read_text())["method"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; effhub errors print one clear line (the problem and the fix) and exit with status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in argv if not word.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    try:
        return _run(args)
    except EffhubError as error:
        print(f"effhub: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
