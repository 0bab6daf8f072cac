"""Model cards: `huggingface_hub.ModelCard`s rendered from Jinja templates and a run's measured evaluation results.

A run folder (which is a model folder) holds `eval_results.json`, written by the trainer after evaluation:

    {"model_name": "my-model-nyuv2",
     "results": [{"task_type": "semantic-segmentation", "task_name": "Semantic segmentation",
                  "dataset_type": "nyu_v2", "dataset_name": "NYU-v2", "dataset_split": "test",
                  "metric_type": "mean_iou", "metric_name": "mIoU", "metric_value": 0.41}],
     "extra": {...}}

and `card_spec.json`, the arguments of :func:`build_model_card` other than the results. The card's metadata
(`model-index` included) and its results table are both rendered from `eval_results.json`, so the numbers on a card are
always the measured ones: templates hold no literal metric values. `effhub card <run_dir>` re-renders README.md from
those two files (:func:`rewrite_card`).

The shared templates live in `effhub/hub/templates/`: `base.md` defines the sections as Jinja blocks and `default.md`
serves methods without a template of their own. A method's template lives beside its code and is named as
`"package:file.md"` (e.g. `"effhub.models.<method>:card_template.md"`); it starts with `{% extends "base.md" %}` and
overrides blocks.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..atomic import atomic_write_bytes, atomic_write_json
from ..errors import CheckpointError, ConfigError, MissingDependencyError

EVAL_RESULTS_FILE = "eval_results.json"
CARD_SPEC_FILE = "card_spec.json"
CARD_FILE = "README.md"
IMAGES_FOLDER = "images"
DEFAULT_TEMPLATE = "default"
TEMPLATE_FOLDER = "hub/templates"
# what a card's usage code loads before the model has a repository; `rewrite_card(run_dir, repo_id=...)` fills it in
REPO_PLACEHOLDER = "<repo or folder>"

REQUIRED_RESULT_KEYS = ("task_type", "dataset_type", "dataset_name", "metric_type", "metric_value")
OPTIONAL_RESULT_KEYS = tuple(
    f.name for f in fields(EvalResult) if f.name not in REQUIRED_RESULT_KEYS and f.name != "verify_token"
)
_STRING_RESULT_KEYS = (
    "task_type",
    "task_name",
    "dataset_type",
    "dataset_name",
    "dataset_config",
    "dataset_split",
    "dataset_revision",
    "metric_type",
    "metric_name",
    "metric_config",
    "source_name",
    "source_url",
)
# build_model_card arguments a card spec may hold (besides free template variables)
_SPEC_ARGUMENTS = ("template", "library_name", "tags", "datasets", "base_model", "pipeline_tag", "license", "images")


# --------------------------------------------------------------------------------------------------------------------
# files


# --------------------------------------------------------------------------------------------------------------------
# evaluation results


def validate_eval_results(data: Any, source: str = "eval results") -> dict[str, Any]:
    """Check an evaluation-results dict against the contract and return a normalised copy.

    Raises:
        ConfigError: naming the first problem (missing key, wrong type, non-finite value, unknown key).
    """
    fix = (
        f"write it with effhub.hub.cards.write_eval_results(path, model_name=..., results=[{{"
        f"{', '.join(repr(k) + ': ...' for k in REQUIRED_RESULT_KEYS)}}}, ...])"
    )
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source} is a {type(data).__name__}, not a JSON object", fix)
    unknown = set(data) - {"model_name", "results", "extra"}
    if unknown:
        raise ConfigError(
            f"{source} has unknown top-level keys {sorted(unknown)}", "keep only model_name, results and extra"
        )
    model_name = data.get("model_name")
    if not isinstance(model_name, str) or not model_name.strip():
        raise ConfigError(f"{source} has no model_name (a non-empty string)", fix)
    results = data.get("results")
    if not isinstance(results, list):
        raise ConfigError(f"{source}: 'results' must be a list, got {type(results).__name__}", fix)
    extra = data.get("extra", {})
    if not isinstance(extra, Mapping):
        raise ConfigError(f"{source}: 'extra' must be an object, got {type(extra).__name__}", "pass extra as a dict")
    normalised = []
    for index, result in enumerate(results):
        where = f"{source}: results[{index}]"
        if not isinstance(result, Mapping):
            raise ConfigError(f"{where} is a {type(result).__name__}, not an object", fix)
        missing = [key for key in REQUIRED_RESULT_KEYS if result.get(key) is None]
        if missing:
            raise ConfigError(f"{where} lacks {missing}", fix)
        unknown = set(result) - set(REQUIRED_RESULT_KEYS) - set(OPTIONAL_RESULT_KEYS)
        if unknown:
            raise ConfigError(
                f"{where} has unknown keys {sorted(unknown)}",
                f"use only {list(REQUIRED_RESULT_KEYS) + list(OPTIONAL_RESULT_KEYS)}; put anything else in 'extra'",
            )
        for key in _STRING_RESULT_KEYS:
            if result.get(key) is not None and not isinstance(result[key], str):
                raise ConfigError(f"{where}: '{key}' must be a string, got {result[key]!r}", fix)
        value = result["metric_value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(
                f"{where}: metric_value must be a finite number, got {value!r}",
                "record the measured value as a JSON number (evaluate again if it came out NaN)",
            )
        normalised.append({key: result[key] for key in (*REQUIRED_RESULT_KEYS, *OPTIONAL_RESULT_KEYS) if key in result})
    return {"model_name": model_name, "results": normalised, "extra": dict(extra)}


def write_eval_results(
    path: str | os.PathLike,
    *,
    model_name: str,
    results: Iterable[Mapping[str, Any]],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Validate and write `eval_results.json` atomically; `path` is the file or its folder. Returns the file path."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / EVAL_RESULTS_FILE
    data = validate_eval_results({"model_name": model_name, "results": list(results), "extra": dict(extra or {})})
    atomic_write_json(path, data)
    return path


def read_eval_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate `eval_results.json` (`path` is the file or its folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / EVAL_RESULTS_FILE
    if not path.is_file():
        raise CheckpointError(
            f"no evaluation results at {path}",
            "evaluate the run first (`effhub eval <method> <run_dir>`), which writes eval_results.json",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path} is not valid JSON ({error})", "re-run the evaluation to rewrite it") from None
    return validate_eval_results(data, source=str(path))


def eval_results_to_card_results(eval_results: Mapping[str, Any]) -> list[EvalResult]:
    """The `huggingface_hub.EvalResult`s (the card's `model-index`) of an evaluation-results dict."""
    data = validate_eval_results(eval_results)
    return [EvalResult(**result) for result in data["results"]]


# --------------------------------------------------------------------------------------------------------------------
# rendering


def _template_environment(search_paths: Iterable[Path] = ()):
    import jinja2

    loaders = [jinja2.FileSystemLoader([str(p) for p in search_paths])] if search_paths else []
    loaders.append(jinja2.PackageLoader("effhub", TEMPLATE_FOLDER))
    environment = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=False,  # Markdown, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,  # a misspelt variable fails loudly instead of vanishing from the card
    )
    environment.filters["metric"] = format_metric_value
    return environment


def format_metric_value(value: Any) -> str:
    """A metric value as printed in card tables: 4 significant digits for floats."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.4g}"


def list_templates() -> list[str]:
    """Names of the shared card templates (`base` is only extended, never used directly)."""
    from importlib import resources

    folder = resources.files("effhub").joinpath(TEMPLATE_FOLDER)
    names = (entry.name for entry in folder.iterdir())
    return sorted(name[:-3] for name in names if name.endswith(".md") and name != "base.md")


def _resolve_template(template: str) -> tuple[str, list[Path]]:
    """(template name for the loader, extra search paths) for a shared template's name, a `"package:file.md"`
    resource or a path to a `.md` file."""
    package, colon, resource = template.partition(":")
    if colon and resource.endswith(".md"):
        from importlib import resources

        try:
            candidate = Path(str(resources.files(package).joinpath(resource)))
        except ModuleNotFoundError as error:
            raise ConfigError(f"model card template '{template}' names no importable package ({error})",
                              "name a template as 'package:file.md' of an installed package") from error
        if not candidate.is_file():
            raise ConfigError(f"model card template '{template}' does not exist",
                              "name a template file that the package ships")
        return candidate.name, [candidate.parent.resolve()]
    candidate = Path(template)
    if candidate.suffix == ".md" and candidate.is_file():
        return candidate.name, [candidate.parent.resolve()]
    if template in list_templates():
        return f"{template}.md", []
    return f"{DEFAULT_TEMPLATE}.md", []


def _default_usage(repo_id: str) -> str:
    return (
        "import effhub  # registers effhub's model classes with the transformers Auto classes\n"
        "from transformers import AutoModel\n\n"
        f'model = AutoModel.from_pretrained("{repo_id}")'
    )


def build_model_card(
    *,
    template: str,
    model_name: str,
    eval_results: Mapping[str, Any],
    library_name: str = "effhub",
    tags: Iterable[str] | None = None,
    datasets: Iterable[str] | None = None,
    base_model: str | None = None,
    pipeline_tag: str | None = None,
    license: str = "apache-2.0",
    images: Mapping[str, str | os.PathLike] | None = None,
    **template_vars: Any,
) -> ModelCard:
    """Render a model card whose metadata and results table come from `eval_results`.

    Args:
        template (`str`): a template name (`list_templates()`; unknown names fall back to `default`) or a path to a
            `.md` Jinja template (which may `{% extends "base.md" %}`).
        model_name (`str`): the card's title and `model-index` name.
        eval_results (`dict`): the evaluation-results dict (see the module docstring).
        library_name, tags, datasets, base_model, pipeline_tag, license: the card's metadata; `effhub` is always
            among the tags.
        images (`dict[str, Path]`, *optional*): plots to show, by name; stored in the repo as `images/<name>.png`
            and linked relatively. The files are copied when the card is saved with :func:`save_model_card`.
        **template_vars: free variables of the template: `summary`, `model_details` (dict shown as a table),
            `usage` (code), `repo_id`, `training` (the recipe snapshot: dict or YAML text), `limitations`,
            `citation` (BibTeX), and any a method template uses.

    Returns:
        a `ModelCard`; `card.effhub_images` maps each image's repo path to its source file.
    """
    data = validate_eval_results(eval_results)
    reserved = sorted(set(template_vars) & {"card_data", "model_name", "results", "extra", "images"})
    if reserved:
        raise ConfigError(
            f"template variables {reserved} are filled by build_model_card itself",
            "pass results through eval_results and plots through images; rename other variables",
        )
    images = dict(images or {})
    for name in images:
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
            raise ConfigError(f"image name {name!r} is not a plain file name", "name images like 'policy_heatmap'")
    tag_list = ["effhub"] + [tag for tag in (tags or []) if tag != "effhub"]
    card_data = ModelCardData(
        model_name=model_name,
        library_name=library_name,
        license=license,
        tags=list(dict.fromkeys(tag_list)),
        datasets=list(datasets) if datasets else None,
        base_model=base_model,
        pipeline_tag=pipeline_tag,
        eval_results=[EvalResult(**result) for result in data["results"]] or None,
    )
    image_links = {name: f"{IMAGES_FOLDER}/{name}.png" for name in images}
    training = template_vars.pop("training", None)
    if isinstance(training, Mapping):
        training = yaml.safe_dump(dict(training), sort_keys=False).rstrip()
    repo_id = template_vars.pop("repo_id", None) or f"your-org/{model_name}"
    variables = {
        "summary": f"{model_name}, trained with effhub.",
        "model_details": {},
        "limitations": "",
        "citation": "",
        "usage": _default_usage(repo_id),
        **template_vars,
        "card_data": card_data.to_yaml(),
        "model_name": model_name,
        "repo_id": repo_id,
        "results": data["results"],
        "extra": data["extra"],
        "images": image_links,
        "training": training or "",
    }
    template_name, search_paths = _resolve_template(template)
    import jinja2

    try:
        content = _template_environment(search_paths).get_template(template_name).render(**variables)
    except jinja2.TemplateError as error:
        raise ConfigError(
            f"model card template '{template}' failed to render: {error}",
            "pass every variable the template uses as a keyword of build_model_card (or fix the template)",
        ) from None
    card = ModelCard(content)
    card.effhub_images = {image_links[name]: Path(path) for name, path in images.items()}
    return card


def save_model_card(card: ModelCard, model_dir: str | os.PathLike) -> Path:
    """Write `card` as `model_dir/README.md` (atomically) and copy its images to `model_dir/images/`."""
    model_dir = Path(model_dir)
    for relative, source in getattr(card, "effhub_images", {}).items():
        target = model_dir / relative
        if not Path(source).is_file():
            raise ConfigError(f"card image {source} does not exist", "save the plot before writing the card")
        if Path(source).resolve() != target.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, Path(source).read_bytes())
    path = model_dir / CARD_FILE
    atomic_write_bytes(path, str(card).encode("utf-8"))
    return path


def write_model_card(
    model_dir: str | os.PathLike, card_spec: Mapping[str, Any], eval_results: Mapping[str, Any]
) -> Path:
    """Render and write `model_dir/README.md`, keeping what it was made from next to it.

    `card_spec` holds the keyword arguments of :func:`build_model_card` except `eval_results` (`model_name` defaults
    to the results'); it is saved as `card_spec.json` (images re-pointed at their copies in `images/`) and the results
    as `eval_results.json`, so :func:`rewrite_card` can re-render the card later.
    """
    model_dir = Path(model_dir)
    data = validate_eval_results(eval_results)
    spec = dict(card_spec)
    spec.setdefault("model_name", data["model_name"])
    spec.setdefault("template", DEFAULT_TEMPLATE)
    try:
        json.dumps(spec, default=str)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"the card spec cannot be saved as JSON ({error})", "pass plain values in card_spec"
        ) from None
    card = build_model_card(eval_results=data, **spec)
    path = save_model_card(card, model_dir)
    saved_spec = dict(spec)
    if spec.get("images"):
        saved_spec["images"] = {name: f"{IMAGES_FOLDER}/{name}.png" for name in spec["images"]}
    atomic_write_json(model_dir / CARD_SPEC_FILE, json.loads(json.dumps(saved_spec, default=str)))
    if not (model_dir / EVAL_RESULTS_FILE).is_file() or read_eval_results(model_dir) != data:
        atomic_write_json(model_dir / EVAL_RESULTS_FILE, data)
    return path


def rewrite_card(run_dir: str | os.PathLike, repo_id: str | None = None) -> Path:
    """Re-render `run_dir/README.md` from `run_dir/card_spec.json` and `run_dir/eval_results.json`.

    Args:
        run_dir (`str` or `os.PathLike`): a folder written by `effhub train` (or by `write_model_card`).
        repo_id (`str`, *optional*): the repository the folder is published as: recorded in `card_spec.json` and put
            in place of `REPO_PLACEHOLDER` in the card's usage code, so the card shows the id to load.
    """
    run_dir = Path(run_dir)
    spec_path = run_dir / CARD_SPEC_FILE
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder '{run_dir}' does not exist", "pass the --output-dir of an effhub train run")
    if not spec_path.is_file():
        raise CheckpointError(
            f"{run_dir} has no {CARD_SPEC_FILE}",
            "pass a run folder written by `effhub train` (or write its card once with "
            "effhub.hub.cards.write_model_card)",
        )
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(
            f"{spec_path} is not valid JSON ({error})", "re-write the card from the training run"
        ) from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{spec_path} does not hold a JSON object", "re-write the card from the training run")
    eval_results = read_eval_results(run_dir)
    if repo_id is not None:
        spec["repo_id"] = repo_id
        if isinstance(spec.get("usage"), str):
            spec["usage"] = spec["usage"].replace(REPO_PLACEHOLDER, repo_id)
        atomic_write_json(spec_path, spec)
    if spec.get("images"):
        spec["images"] = {
            name: (path if Path(path).is_absolute() else run_dir / path) for name, path in spec["images"].items()
        }
    card = build_model_card(eval_results=eval_results, **spec)
    return save_model_card(card, run_dir)


# --------------------------------------------------------------------------------------------------------------------
# plots (optional dependency: `pip install effhub[plots]`)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError(
            "drawing card plots needs matplotlib, which is not installed", "pip install 'effhub[plots]'"
        ) from None
    matplotlib.use("Agg")  # no display: plots are files
    import matplotlib.pyplot as plt

    return plt


def _save_figure(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(descriptor)
    try:
        figure.savefig(temporary, format="png", dpi=120, bbox_inches="tight")
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
        figure.clear()
        _pyplot().close(figure)
    return path


def save_bar_plot(
    path: str | os.PathLike, values: Mapping[str, float], title: str, ylabel: str | None = None
) -> Path:
    """Save a bar chart of `values` (label -> number) as a PNG at `path`."""
    if not values:
        raise ConfigError("save_bar_plot got no values", "pass a non-empty {label: value} dict")
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(4.0, 0.6 * len(values) + 2), 3.2))
    axes.bar(list(values), [float(v) for v in values.values()], color="#4c72b0")
    axes.set_title(title)
    if ylabel:
        axes.set_ylabel(ylabel)
    axes.tick_params(axis="x", rotation=45 if len(values) > 6 else 0)
    return _save_figure(figure, path)


def save_heatmap(
    path: str | os.PathLike,
    matrix: Any,
    row_labels: Iterable[str],
    col_labels: Iterable[str],
    title: str,
    value_format: str = ".2f",
    colorbar_label: str | None = None,
) -> Path:
    """Save a heatmap of `matrix` (rows x columns, e.g. tasks x blocks of a sharing policy) as a PNG at `path`."""
    import numpy as np

    values = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix, dtype=float)
    row_labels, col_labels = [str(x) for x in row_labels], [str(x) for x in col_labels]
    if values.ndim != 2 or values.shape != (len(row_labels), len(col_labels)):
        raise ConfigError(
            f"heatmap matrix has shape {values.shape} but {len(row_labels)} row and {len(col_labels)} column labels",
            "pass one label per row and per column",
        )
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(4.0, 0.45 * len(col_labels) + 2), max(2.5, 0.45 * len(row_labels) + 1.5)))
    image = axes.imshow(values, aspect="auto", cmap="viridis")
    axes.set_xticks(range(len(col_labels)), col_labels, rotation=45 if len(col_labels) > 8 else 0)
    axes.set_yticks(range(len(row_labels)), row_labels)
    axes.set_title(title)
    if values.size <= 400:  # annotations stay readable up to about 20 x 20 cells
        middle = (np.nanmin(values) + np.nanmax(values)) / 2
        for (row, col), value in np.ndenumerate(values):
            axes.text(col, row, format(value, value_format), ha="center", va="center", fontsize=7,
                      color="black" if value > middle else "white")
    colorbar = figure.colorbar(image, ax=axes)
    if colorbar_label:
        colorbar.set_label(colorbar_label)
    return _save_figure(figure, path)


__all__ = [
    "CARD_FILE",
    "REPO_PLACEHOLDER",
    "CARD_SPEC_FILE",
    "EVAL_RESULTS_FILE",
    "build_model_card",
    "eval_results_to_card_results",
    "format_metric_value",
    "list_templates",
    "read_eval_results",
    "rewrite_card",
    "save_bar_plot",
    "save_heatmap",
    "save_model_card",
    "validate_eval_results",
    "write_eval_results",
    "write_model_card",
]
