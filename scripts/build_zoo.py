"""Build the effhub model zoo: train, evaluate and publish every entry of `scripts/zoo.yaml`, and write its card.

    python scripts/build_zoo.py                      # the demo-length zoo, published to a local hub (make zoo)
    python scripts/build_zoo.py --full               # the benchmark-length recipes
    python scripts/build_zoo.py --only videoiq-clips # some entries (their `depends` are checked, not rebuilt)
    python scripts/build_zoo.py --endpoint https://huggingface.co --token "$HF_TOKEN"   # another Hub
    python scripts/build_zoo.py --table              # only rewrite model_cards/README.md from the cards

Every step is an effhub command run in a child process (`effhub train`, `effhub eval`, `effhub card --repo-id`,
`effhub push`; `effhub budget simulate` for the budget tool) or, where effhub has no command, one package function
(`export_shipped_teacher`, `write_simulation_card`): the zoo re-implements none of them. A child's output goes to
`<build>/<name>/build.log`; the parent prints one progress line per step.

An entry is skipped when its resolved recipe, the version of the data it generates, the effhub source files its
last build loaded (and its method folder) and the fingerprints of the entries it depends on are all unchanged since
that build (`<build>/<name>/zoo-stamp.json`); an unchanged build that the endpoint does not hold at the stamped
commit is pushed again without retraining. A failed entry is reported at the end and the exit status is 1.

The cards (`README.md`, `images/`, and the JSON they were rendered from) are copied to `model_cards/<name>/` with
`zoo.json` (the build record) and `model_cards/README.md` is regenerated: the zoo table. Nothing in them is typed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from effhub.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ZOO_FILE = ROOT / "scripts" / "zoo.yaml"
CARDS_DIR = ROOT / "model_cards"
BUILD_DIR = ROOT / ".zoo"
STAMP_FILE = "zoo-stamp.json"
RECORD_FILE = "zoo.json"
TABLE_FILE = "README.md"
BUILDS = ("train", "shipped", "simulation")
REPO_TYPES = ("model", "dataset")
FORMATS = ("percent", "count", "count_of", "number")
# what model_cards/<name>/ holds: the card and what it was rendered from
MODEL_CARD_FILES = ("README.md", "eval_results.json", "card_spec.json", "images")
DATASET_CARD_FILES = ("README.md", "summary.json", "table.md", "allocations.md", "plot.png")
# package data (templates, recipes, shipped weights) of these folders is part of every code fingerprint
SHARED_DATA_FOLDERS = ("hub/templates",)
STEP_FLAG = "--step"


class ZooError(ConfigError):
    """A zoo file or a build that cannot go on (the message names the fix); an `effhub.errors.ConfigError`."""


# --------------------------------------------------------------------------------------------------- the zoo file
def load_zoo(path: Path = ZOO_FILE, full: bool = False) -> list[dict]:
    """The entries of the zoo file, checked, with `full:` applied when `full`."""
    import yaml

    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ZooError(f"cannot read the zoo file {path}: {error}") from None
    entries = (document or {}).get("models") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ZooError(f"{path} has no `models:` list")
    names, checked = set(), []
    for index, raw in enumerate(entries):
        where = f"{path.name}, entry {index + 1}"
        if not isinstance(raw, dict):
            raise ZooError(f"{where} is not a mapping")
        entry = dict(raw)
        for key in ("name", "method", "recipe", "repo_id", "task", "data", "headline", "efficiency"):
            if not entry.get(key):
                raise ZooError(f"{where} ({entry.get('name', '?')}) has no `{key}`")
        name = entry["name"]
        if name in names:
            raise ZooError(f"{where}: the name {name} is used twice")
        if not all(c.isalnum() or c in "-_." for c in name):
            raise ZooError(f"{where}: the name {name!r} must be letters, digits, '-', '_' or '.'")
        entry.setdefault("build", "train")
        entry.setdefault("repo_type", "model")
        entry.setdefault("set", [])
        entry.setdefault("options", {})
        entry.setdefault("depends", [])
        if entry["build"] not in BUILDS:
            raise ZooError(f"{where} ({name}): build {entry['build']!r} is not one of {', '.join(BUILDS)}")
        if entry["repo_type"] not in REPO_TYPES:
            raise ZooError(f"{where} ({name}): repo_type {entry['repo_type']!r} is not one of {', '.join(REPO_TYPES)}")
        if "/" not in str(entry["repo_id"]):
            raise ZooError(f"{where} ({name}): repo_id {entry['repo_id']!r} must be 'namespace/name'")
        for dependency in entry["depends"]:
            if dependency not in names:
                raise ZooError(f"{where} ({name}) depends on {dependency!r}, which no earlier entry is")
        headline, efficiency = entry["headline"], entry["efficiency"]
        if not (headline.get("metric") or (headline.get("source") and headline.get("label"))):
            raise ZooError(f"{where} ({name}): headline needs `metric`, or `source` and `label`")
        if not efficiency.get("label") or not efficiency.get("source") or efficiency.get("format") not in FORMATS:
            raise ZooError(f"{where} ({name}): efficiency needs `label`, `source` and a `format` of "
                           f"{', '.join(FORMATS)}")
        overrides = entry.pop("full", None) or {}
        if full:
            unknown = set(overrides) - {"recipe", "set", "options", "build"}
            if unknown:
                raise ZooError(f"{where} ({name}): `full` may change recipe, set, options and build, not {unknown}")
            entry.update(overrides)
        entry["full"] = bool(full)
        names.add(name)
        checked.append(entry)
    return checked


def rebuild_command(entry: dict) -> str:
    """The command that rebuilds one entry (shown in the zoo table)."""
    return "python scripts/build_zoo.py" + (" --full" if entry.get("full") else "") + f" --only {entry['name']}"


# ------------------------------------------------------------------------------------------------ fingerprints
def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256_json(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def package_dir() -> Path:
    import effhub

    return Path(effhub.__file__).resolve().parent


def recipe_fingerprint(entry: dict) -> str:
    """sha256 of what the entry trains: the resolved recipe (shipped recipe + overrides), its options, its build."""
    if entry["build"] == "shipped":
        from effhub.models.clip_teacher.weights import base_teacher_path

        recipe = json.loads((base_teacher_path(entry["recipe"]) / "recipe.json").read_text())
    else:
        from effhub.recipes import load_recipe, recipe_to_dict

        recipe = recipe_to_dict(load_recipe(entry["method"], entry["recipe"], list(entry["set"])))
    return _sha256_json({"build": entry["build"], "recipe": recipe, "options": entry["options"]})


def data_fingerprint(entry: dict) -> str | None:
    from effhub.data import data_version

    return data_version(entry["data"])


def method_folder(method: str) -> Path:
    """The package folder of a method (`effhub/models/<m>`, `effhub/adapters/<m>`, `effhub/budget`)."""
    import importlib

    from effhub.registry import get_method

    entry = get_method(method)
    target = next(getattr(entry, name) for name in ("train", "evaluate", "demo", "recipe_class") if getattr(entry, name))
    module = importlib.import_module(target.partition(":")[0])
    return Path(module.__file__).resolve().parent


def code_files(loaded: list[str], method: str) -> dict[str, str]:
    """sha256 per file of the code fingerprint: the effhub modules a build loaded, every file of its method folder
    (templates, recipes, shipped weights) and the shared templates; paths relative to the package's parent."""
    base = package_dir()
    paths = {base.parent / relative for relative in loaded}
    for folder in (method_folder(method), *(base / shared for shared in SHARED_DATA_FOLDERS)):
        paths.update(path for path in folder.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    return {path.relative_to(base.parent).as_posix(): _sha256_file(path) for path in sorted(paths) if path.is_file()}


def changed_code(files: dict[str, str]) -> list[str]:
    """The files of a recorded code fingerprint that changed or disappeared since."""
    parent = package_dir().parent
    changed = []
    for relative, digest in files.items():
        path = parent / relative
        if not path.is_file() or _sha256_file(path) != digest:
            changed.append(relative)
    return changed


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stale_reasons(entry: dict, stamp: dict | None, stamps: dict[str, dict]) -> list[str]:
    """Why an entry must be rebuilt (empty: its last build is current)."""
    if not stamp:
        return ["never built"]
    reasons = []
    if stamp.get("recipe") != recipe_fingerprint(entry):
        reasons.append("recipe changed")
    if stamp.get("data") != data_fingerprint(entry):
        reasons.append(f"data version changed ({stamp.get('data')} -> {data_fingerprint(entry)})")
    changed = changed_code(stamp.get("code", {}))
    if changed:
        reasons.append(f"code changed ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''})")
    for dependency in entry["depends"]:
        if (stamps.get(dependency) or {}).get("fingerprint") != stamp.get("depends", {}).get(dependency):
            reasons.append(f"{dependency} was rebuilt")
    return reasons


# ---------------------------------------------------------------------------------------------------- the steps
def _step_main(spec_text: str) -> int:
    """In a child process: run one effhub command (`cli`) or package function (`call`), then record which effhub
    source files it loaded (the code fingerprint)."""
    spec = json.loads(spec_text)
    status = 1
    try:
        if "cli" in spec:
            from effhub.cli import main

            status = main(spec["cli"])
        else:
            import importlib

            module, _, function = spec["call"].partition(":")
            getattr(importlib.import_module(module), function)(**spec.get("kwargs", {}))
            status = 0
    finally:
        base = package_dir()
        loaded = sorted({Path(module.__file__).resolve().relative_to(base.parent).as_posix()
                         for module in list(sys.modules.values())
                         if getattr(module, "__file__", None) and Path(module.__file__).resolve().is_relative_to(base)})
        Path(spec["modules"]).write_text(json.dumps(loaded))
    return int(status or 0)


def run_step(name: str, label: str, spec: dict, build: Path, env: dict, log) -> list[str]:
    """Run one step in a child process; returns the effhub files it loaded. Raises `ZooError` when it fails."""
    modules = build / f".modules-{label}.json"
    spec = {**spec, "modules": str(modules)}
    shown = ("effhub " + shlex.join(spec["cli"])) if "cli" in spec else f"{spec['call']}(...)"
    print(f"    {label}: {shown}", flush=True)
    log.write(f"\n$ {shown}\n")
    log.flush()
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, str(Path(__file__).resolve()), STEP_FLAG, json.dumps(spec)],
                               env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.perf_counter() - started
    log.write(f"[{label}: exit {completed.returncode}, {seconds:.0f} s]\n")
    log.flush()
    if completed.returncode != 0:
        raise ZooError(f"{label} failed (exit {completed.returncode}); see {_shown_path(log.name)}")
    print(f"    {label}: done in {seconds:.0f} s", flush=True)
    loaded = read_json(modules) or []
    modules.unlink(missing_ok=True)
    return loaded


def _shown_path(path) -> str:
    path = Path(path).resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def build_steps(entry: dict, build: Path) -> tuple[Path, list[tuple[str, dict]]]:
    """The publishable folder of an entry and the steps that make it (before the push)."""
    run_dir = build / "run"
    repo = entry["repo_id"]
    sets = [word for value in entry["set"] for word in ("--set", str(value))]
    if entry["build"] == "train":
        options = [word for key, value in entry["options"].items()
                   for word in (f"--{str(key).replace('_', '-')}", str(value))]
        return run_dir, [
            ("train", {"cli": ["train", entry["method"], "--recipe", entry["recipe"], "--output-dir", str(run_dir),
                               "--overwrite", "--no-progress", *sets, *options]}),
            ("eval", {"cli": ["eval", str(run_dir), "--output", str(build / "eval.json")]}),
            ("card", {"cli": ["card", str(run_dir), "--repo-id", repo]}),
        ]
    if entry["build"] == "shipped":
        return run_dir, [
            ("export", {"call": "effhub.models.clip_teacher.weights:export_shipped_teacher",
                        "kwargs": {"output_dir": str(run_dir), "name": entry["recipe"]}}),
            ("eval", {"cli": ["eval", str(run_dir), "--output", str(build / "eval.json")]}),
            ("card", {"cli": ["card", str(run_dir), "--repo-id", repo]}),
        ]
    simulation = build / "simulation"
    return run_dir, [
        ("simulate", {"cli": ["budget", "simulate", "--recipe", entry["recipe"], "--output", str(simulation),
                              "--overwrite", "--no-progress", *sets]}),
        ("card", {"call": "effhub.budget.card_budget:write_simulation_card",
                  "kwargs": {"simulation_dir": str(simulation), "output_dir": str(run_dir), "repo_id": repo}}),
    ]


def hub_commit(endpoint: str, entry: dict, token: str | None) -> str | None:
    """The commit the endpoint holds for the entry's repository (None when it has none)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        return HfApi(endpoint=endpoint, token=token).repo_info(entry["repo_id"], repo_type=entry["repo_type"]).sha
    except (RepositoryNotFoundError, HfHubHTTPError):
        return None


# ------------------------------------------------------------------------------------------ cards and the table
def dotted(folder: Path, source: str):
    """The value at `file:dotted.key` in a JSON file of `folder`."""
    file_name, _, key = source.partition(":")
    value = read_json(folder / file_name)
    if value is None:
        raise ZooError(f"{file_name} is missing from {_shown_path(folder)}")
    for part in key.split(".") if key else []:
        if not isinstance(value, dict) or part not in value:
            raise ZooError(f"{source} is not in {_shown_path(folder)}")
        value = value[part]
    return value


def card_metadata(folder: Path) -> dict:
    """The YAML metadata of `folder/README.md` (a model or dataset card)."""
    from huggingface_hub import RepoCard

    return RepoCard.load(folder / "README.md", ignore_metadata_errors=False).data.to_dict()


def headline_of(entry: dict, folder: Path) -> dict:
    """The zoo table's metric of a card folder: from the card's model-index, or from a dataset's summary file."""
    headline = entry["headline"]
    if headline.get("metric"):
        from effhub.hub.pages import metric_rows

        rows = [row for row in metric_rows(card_metadata(folder)) if row["metric"] == headline["metric"]]
        if not rows:
            raise ZooError(f"the card in {_shown_path(folder)} has no metric named {headline['metric']!r}")
        return {"label": rows[0]["metric"], "value": rows[0]["value"], "dataset": rows[0]["dataset"],
                "task": rows[0]["task"], "source": "model-index"}
    return {"label": headline["label"], "value": dotted(folder, headline["source"]), "dataset": entry["data"],
            "task": entry["task"], "source": headline["source"]}


def format_value(value, kind: str, total=None) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} {format_value(item, kind)}" for key, item in value.items())
    if kind == "percent":
        return f"{value:.1%}"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "count_of":
        return f"{int(value):,} ({value / total:.3%} of {int(total):,})"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def efficiency_of(entry: dict, folder: Path) -> dict:
    spec = entry["efficiency"]
    value = dotted(folder, spec["source"])
    total = dotted(folder, spec["total"]) if spec.get("total") else None
    return {"label": spec["label"], "value": value, "total": total, "source": spec["source"],
            "text": format_value(value, spec["format"], total)}


def copy_card(entry: dict, run_dir: Path, target: Path) -> None:
    """Replace `model_cards/<name>/` with the card files of the publishable folder."""
    keep = MODEL_CARD_FILES if entry["repo_type"] == "model" else DATASET_CARD_FILES
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in keep:
        source = run_dir / name
        if source.is_dir():
            shutil.copytree(source, staging / name)
        elif source.is_file():
            shutil.copyfile(source, staging / name)
    if (target / RECORD_FILE).is_file():
        shutil.copyfile(target / RECORD_FILE, staging / RECORD_FILE)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def write_record(entry: dict, run_dir: Path, target: Path, stamp: dict) -> dict:
    """`model_cards/<name>/zoo.json`: what the table shows beyond the card, from the build."""
    from effhub.hub.publish import DEFAULT_IGNORE_PATTERNS, files_to_push

    files = files_to_push(run_dir, DEFAULT_IGNORE_PATTERNS)
    record = {
        "name": entry["name"], "method": entry["method"], "repo_id": entry["repo_id"],
        "repo_type": entry["repo_type"], "build": entry["build"], "recipe": entry["recipe"], "set": entry["set"],
        "options": entry["options"], "full": entry["full"], "task": entry["task"], "data": entry["data"],
        "data_version": stamp["data"], "size_bytes": sum((run_dir / f).stat().st_size for f in files),
        "files": len(files), "command": rebuild_command(entry), "build_seconds": stamp["seconds"],
        "built_at": stamp["built_at"], "fingerprint": stamp["fingerprint"], "versions": stamp["versions"],
    }
    (target / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def zoo_rows(entries: list[dict], cards_dir: Path = CARDS_DIR) -> list[dict]:
    """One row per entry whose card folder exists, read from the committed cards and build records only."""
    from effhub.hub.pages import format_size
    from effhub.registry import get_method

    rows = []
    for entry in entries:
        folder = cards_dir / entry["name"]
        record = read_json(folder / RECORD_FILE)
        if record is None or not (folder / "README.md").is_file():
            continue
        headline = headline_of(entry, folder)
        efficiency = efficiency_of(entry, folder)
        repo = record["repo_id"] + (" (dataset)" if record["repo_type"] == "dataset" else "")
        kind = get_method(entry["method"]).kind
        rows.append({"model": entry["name"], "repo": repo, "method": entry["method"] + f" ({kind})",
                     "task": entry["task"], "data": f"{headline['dataset']}",
                     "headline": f"{headline['label']}: {format_value(headline['value'], 'number')}",
                     "efficiency": f"{efficiency['label']}: {efficiency['text']}",
                     "size": format_size(record["size_bytes"]), "command": record["command"]})
    return rows


TABLE_COLUMNS = (("model", "model"), ("repo", "repository"), ("method", "method"), ("task", "task"),
                 ("data", "data"), ("headline", "headline metric"), ("efficiency", "efficiency figure"),
                 ("size", "size on disk"), ("command", "rebuild"))


def zoo_table(entries: list[dict], cards_dir: Path = CARDS_DIR) -> str:
    """`model_cards/README.md`: the zoo table, generated from the cards."""
    rows = zoo_rows(entries, cards_dir)
    lines = ["# The effhub model zoo", "",
             "Generated by `python scripts/build_zoo.py` (`make zoo`) from the cards in this folder, which that "
             "script wrote from measured runs; do not edit by hand. What each entry is and how to rebuild or publish "
             "it elsewhere: [docs/zoo.md](../docs/zoo.md). The list of models is `scripts/zoo.yaml`.", "",
             "| " + " | ".join(title for _, title in TABLE_COLUMNS) + " |",
             "| " + " | ".join("---" for _ in TABLE_COLUMNS) + " |"]
    for row in rows:
        cells = [f"[{row['model']}]({row['model']}/README.md)" if key == "model" else
                 f"`{row[key]}`" if key == "command" else str(row[key]).replace("|", "\\|") for key, _ in TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Size on disk: the files pushed to the repository (weights, configuration, card, images). Headline "
              "metrics are the test split of the data set named; the cards have every metric."]
    return "\n".join(lines) + "\n"


def write_table(entries: list[dict], cards_dir: Path = CARDS_DIR) -> Path:
    path = cards_dir / TABLE_FILE
    cards_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(zoo_table(entries, cards_dir))
    return path


# ------------------------------------------------------------------------------------------------------ driver
def _fingerprint(stamp: dict) -> str:
    return _sha256_json({key: stamp[key] for key in ("recipe", "data", "code", "depends")})


def publish(entry: dict, run_dir: Path, folder: Path, env: dict, endpoint: str, token: str | None, hub_key: str,
            stamp: dict, cards_dir: Path, log) -> str:
    """Push the publishable folder (`effhub push`), record the commit in the stamp, copy the card to the zoo."""
    run_step(entry["name"], "push", {"cli": ["push", str(run_dir), entry["repo_id"], "--endpoint", endpoint,
                                             "--repo-type", entry["repo_type"], "--commit-message",
                                             f"effhub zoo: {entry['name']} (build {stamp['fingerprint'][:12]})"]},
             folder, env, log)
    commit = hub_commit(endpoint, entry, token)
    stamp.setdefault("published", {})[hub_key] = commit
    (folder / STAMP_FILE).write_text(json.dumps(stamp, indent=1) + "\n")
    target = cards_dir / entry["name"]
    copy_card(entry, run_dir, target)
    write_record(entry, run_dir, target, stamp)
    return commit


def build_entry(entry: dict, build: Path, env: dict, endpoint: str, token: str | None, hub_key: str,
                stamps: dict[str, dict], force: bool, cards_dir: Path) -> str:
    """Build (or skip, or only publish) one entry; returns what was done. Raises `ZooError` on failure."""
    from effhub.training.run_info import package_versions

    name = entry["name"]
    folder = build / name
    folder.mkdir(parents=True, exist_ok=True)
    stamp = read_json(folder / STAMP_FILE)
    reasons = ["--force"] if force else stale_reasons(entry, stamp, stamps)
    run_dir, steps = build_steps(entry, folder)
    if not reasons and run_dir.is_dir():
        record = read_json(cards_dir / name / RECORD_FILE) or {}
        published = stamp.get("published", {}).get(hub_key)
        if published and published == hub_commit(endpoint, entry, token) and \
                record.get("fingerprint") == stamp["fingerprint"]:
            print(f"    unchanged since {stamp['built_at']} and published at {published[:12]}: skipped", flush=True)
            return "skipped"
        print("    unchanged since its last build; not on the endpoint at that build (or its card is missing): "
              "publishing it again", flush=True)
        with open(folder / "build.log", "a") as log:
            publish(entry, run_dir, folder, env, endpoint, token, hub_key, stamp, cards_dir, log)
        return "published"
    print(f"    building: {'; '.join(reasons or ['its run folder is missing'])}", flush=True)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    started = time.perf_counter()
    loaded: set[str] = set()
    with open(folder / "build.log", "w") as log:
        for label, spec in steps:
            loaded.update(run_step(name, label, spec, folder, env, log))
        stamp = {"recipe": recipe_fingerprint(entry), "data": data_fingerprint(entry),
                 "code": code_files(sorted(loaded), entry["method"]),
                 "depends": {dependency: stamps[dependency]["fingerprint"] for dependency in entry["depends"]}}
        stamp.update(fingerprint=_fingerprint(stamp), seconds=round(time.perf_counter() - started, 1),
                     built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), versions=package_versions(),
                     published={})
        (folder / STAMP_FILE).write_text(json.dumps(stamp, indent=1) + "\n")
        stamps[name] = stamp
        publish(entry, run_dir, folder, env, endpoint, token, hub_key, stamp, cards_dir, log)
    return "built"


def build_zoo(entries: list[dict], args) -> int:
    """Build the selected entries in order against one endpoint; write the table; report failures (exit 1)."""
    build = Path(args.build_dir).resolve()
    build.mkdir(parents=True, exist_ok=True)
    token = args.token or os.environ.get("HF_TOKEN")
    selected = [entry for entry in entries if not args.only or entry["name"] in args.only]
    stamps = {entry["name"]: read_json(build / entry["name"] / STAMP_FILE) for entry in entries}
    hub = None
    if args.endpoint:
        endpoint, hub_key = args.endpoint.rstrip("/"), args.endpoint.rstrip("/")
    else:
        from effhub.hub.server import LocalHubServer

        hub_root = Path(args.hub_root or build / "hub").resolve()
        hub = LocalHubServer(hub_root).start()
        endpoint, hub_key = hub.url, f"local:{_shown_path(hub_root)}"
        print(f"local hub at {endpoint} serving {_shown_path(hub_root)} "
              f"(browse it: effhub hub serve --root {_shown_path(hub_root)})", flush=True)
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "TQDM_DISABLE": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    if token:
        env["HF_TOKEN"] = token
    outcomes, failed = {}, {}
    started = time.perf_counter()
    try:
        for index, entry in enumerate(selected, 1):
            print(f"[{index}/{len(selected)}] {entry['name']} ({entry['method']}, {entry['build']}, recipe "
                  f"{entry['recipe']}{' --full' if entry['full'] else ''}) -> {entry['repo_id']}", flush=True)
            entry_started = time.perf_counter()
            broken = [dependency for dependency in entry["depends"] if dependency in failed]
            missing = [dependency for dependency in entry["depends"]
                       if not stamps.get(dependency) and dependency not in broken]
            try:
                if broken or missing:
                    raise ZooError(f"depends on {', '.join(broken + missing)}, which "
                                   f"{'failed' if broken else 'was never built'}")
                outcomes[entry["name"]] = build_entry(entry, build, env, endpoint, token, hub_key, stamps,
                                                      args.force, Path(args.cards_dir))
            except Exception as error:  # noqa: BLE001 - one failed entry must not stop the others
                failed[entry["name"]] = f"{type(error).__name__}: {error}" if not isinstance(error, ZooError) \
                    else str(error)
                print(f"    FAILED: {failed[entry['name']]}", flush=True)
            else:
                print(f"    {outcomes[entry['name']]} in {time.perf_counter() - entry_started:.0f} s", flush=True)
    finally:
        if hub is not None:
            hub.stop()
    table = write_table(entries, Path(args.cards_dir))
    total = time.perf_counter() - started
    counts = {what: sum(1 for value in outcomes.values() if value == what) for what in ("built", "published",
                                                                                       "skipped")}
    print(f"zoo: {counts['built']} built, {counts['published']} published again, {counts['skipped']} skipped, "
          f"{len(failed)} failed in {total:.0f} s; table: {_shown_path(table)}")
    for name, message in failed.items():
        print(f"zoo: FAILED {name}: {message}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=ZOO_FILE, help="the zoo file (default: scripts/zoo.yaml)")
    parser.add_argument("--full", action="store_true", help="the benchmark-length recipes (each entry's `full:`)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="build only these entries")
    parser.add_argument("--force", action="store_true", help="rebuild even what is current")
    parser.add_argument("--endpoint", default=None,
                        help="Hub URL to publish to (default: a local hub on 127.0.0.1 serving --hub-root)")
    parser.add_argument("--token", default=None, help="Hub token for --endpoint (default: HF_TOKEN)")
    parser.add_argument("--hub-root", type=Path, default=None, help="local hub folder (default: <build>/hub)")
    parser.add_argument("--build-dir", type=Path, default=BUILD_DIR, help="run folders and stamps (default: .zoo)")
    parser.add_argument("--cards-dir", type=Path, default=CARDS_DIR, help="where the cards go (default: model_cards)")
    parser.add_argument("--table", action="store_true", help="only regenerate the zoo table from the cards")
    args = parser.parse_args(argv)
    try:
        entries = load_zoo(args.zoo, args.full)
        if args.table:
            print(f"zoo table written to {_shown_path(write_table(entries, args.cards_dir))}")
            return 0
        unknown = sorted(set(args.only) - {entry["name"] for entry in entries})
        if unknown:
            raise ZooError(f"--only {', '.join(unknown)}: no such entry in {args.zoo.name}")
        return build_zoo(entries, args)
    except ZooError as error:
        print(f"build_zoo: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == STEP_FLAG:
        sys.exit(_step_main(sys.argv[2]))
    sys.exit(main())
