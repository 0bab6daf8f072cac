"""Model cards: metadata and results come from the evaluation JSON, images are stored and linked, bad input fails."""

import json
import re
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard

from effhub.errors import CheckpointError, ConfigError, MissingDependencyError
from effhub.hub import cards

RESULTS = [
    {
        "task_type": "semantic-segmentation",
        "task_name": "Semantic segmentation",
        "dataset_type": "nyu_v2",
        "dataset_name": "NYU-v2",
        "dataset_split": "test",
        "metric_type": "mean_iou",
        "metric_name": "mIoU",
        "metric_value": 0.4137,
    },
    {
        "task_type": "depth-estimation",
        "dataset_type": "nyu_v2",
        "dataset_name": "NYU-v2",
        "dataset_split": "test",
        "metric_type": "abs_err",
        "metric_value": 0.5571,
    },
    {
        "task_type": "semantic-segmentation",
        "dataset_type": "cityscapes",
        "dataset_name": "CityScapes",
        "dataset_split": "validation",
        "metric_type": "pixel_accuracy",
        "metric_value": 0.7342,
    },
]


def _eval_results(values=None):
    results = [dict(r) for r in RESULTS]
    for result, value in zip(results, values or []):
        result["metric_value"] = value
    return {"model_name": "toy-multitask", "results": results, "extra": {"seed": 3}}


def _as_rows(results):
    keys = ("task_type", "task_name", "dataset_type", "dataset_name", "dataset_split", "metric_type", "metric_name")
    rows = []
    for result in results:
        get = result.get if isinstance(result, dict) else lambda k: getattr(result, k)
        rows.append(tuple(get(k) for k in keys) + (float(get("metric_value")),))
    return sorted(rows, key=repr)


@pytest.fixture
def heatmap(tmp_path):
    rng = np.random.default_rng(0)
    return cards.save_heatmap(
        tmp_path / "plots" / "policy.png", rng.random((3, 5)), ["seg", "depth", "normal"], list(range(5)), "policy"
    )


def _spec(heatmap):
    return {
        "template": "default",
        "tags": ["multi-task", "effhub"],
        "datasets": ["nyu_v2", "cityscapes"],
        "base_model": "effhub/base",
        "pipeline_tag": "image-segmentation",
        "images": {"policy_heatmap": heatmap},
        "model_details": {"Parameters": 1234},
        "training": {"learning_rate": 0.001, "phases": ["warmup", "policy", "retrain"]},
        "citation": "@inproceedings{sun2020adashare, title={AdaShare}}",
    }


def test_card_model_index_equals_eval_json(tmp_path, heatmap):
    run_dir = tmp_path / "run"
    eval_path = cards.write_eval_results(run_dir, **_eval_results())
    readme = cards.write_model_card(run_dir, _spec(heatmap), cards.read_eval_results(eval_path))

    card = ModelCard.load(readme)
    assert _as_rows(card.data.eval_results) == _as_rows(RESULTS)
    assert card.data.model_name == "toy-multitask"
    assert card.data.library_name == "effhub"
    assert card.data.tags == ["effhub", "multi-task"]
    assert card.data.datasets == ["nyu_v2", "cityscapes"]
    assert card.data.base_model == "effhub/base"
    assert card.data.pipeline_tag == "image-segmentation"
    assert card.data.license == "apache-2.0"
    # the results table shows the same values, and the image is stored in the repo and linked relatively
    for result in RESULTS:
        assert cards.format_metric_value(result["metric_value"]) in card.text
    assert "![policy_heatmap](images/policy_heatmap.png)" in card.text
    stored = run_dir / "images" / "policy_heatmap.png"
    assert stored.read_bytes() == Path(heatmap).read_bytes() and stored.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "learning_rate: 0.001" in card.text and "@inproceedings{sun2020adashare" in card.text
    assert 'AutoModel.from_pretrained("your-org/toy-multitask")' in card.text
    spec = json.loads((run_dir / "card_spec.json").read_text())
    assert spec["images"] == {"policy_heatmap": "images/policy_heatmap.png"}


def test_rewrite_card_uses_the_current_eval_json(tmp_path, heatmap):
    run_dir = tmp_path / "run"
    cards.write_model_card(run_dir, _spec(heatmap), _eval_results())
    Path(heatmap).unlink()  # the card now relies on its own copy in images/
    new_values = [0.4521, 0.4876, 0.8011]
    cards.write_eval_results(run_dir / "eval_results.json", **_eval_results(new_values))

    readme = cards.rewrite_card(run_dir)
    card = ModelCard.load(readme)
    assert sorted(r.metric_value for r in card.data.eval_results) == sorted(new_values)
    assert "0.4137" not in card.text and "0.4521" in card.text
    assert (run_dir / "images" / "policy_heatmap.png").is_file()


def test_rewrite_card_needs_a_card_spec(tmp_path):
    with pytest.raises(CheckpointError, match="card_spec.json"):
        cards.rewrite_card(tmp_path)


def _template_files():
    """The shared templates and every method's `card_template.md`."""
    shared = resources.files("effhub").joinpath("hub", "templates")
    entries = [(entry.name, entry) for entry in shared.iterdir() if entry.name.endswith(".md")]
    for kind in ("models", "adapters"):
        for folder in resources.files("effhub").joinpath(kind).iterdir():
            template = folder.joinpath("card_template.md")
            if template.is_file():
                entries.append((f"{kind}/{folder.name}/card_template.md", template))
    return sorted((name, entry.read_text(encoding="utf-8")) for name, entry in entries)


def test_templates_hold_no_metric_literals():
    templates = _template_files()
    assert {"base.md", "default.md"} <= {name for name, _ in templates}
    for name, text in templates:
        literals = re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])|\d+(?:\.\d+)?\s*%", text)
        assert not literals, f"template {name} holds number literals {literals}: render values from eval_results"


def test_method_template_extends_base_and_unknown_names_fall_back(tmp_path):
    template = tmp_path / "mymethod.md"
    template.write_text('{% extends "base.md" %}\n{% block summary %}\nA {{ method_word }} model.\n{% endblock %}\n')
    card = cards.build_model_card(
        template=str(template), model_name="m", eval_results=_eval_results(), method_word="special"
    )
    assert "A special model." in card.text and "| mIoU |" in card.text
    fallback = cards.build_model_card(template="no-such-method", model_name="m", eval_results=_eval_results())
    assert "## Results" in fallback.text and "| mIoU |" in fallback.text


def test_template_with_an_undefined_variable_fails(tmp_path):
    template = tmp_path / "broken.md"
    template.write_text('{% extends "base.md" %}\n{% block summary %}{{ not_passed }}{% endblock %}\n')
    with pytest.raises(ConfigError, match="not_passed"):
        cards.build_model_card(template=str(template), model_name="m", eval_results=_eval_results())


def _bad(mutate):
    data = _eval_results()
    mutate(data)
    return data


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "not a JSON object"),
        (_bad(lambda d: d.pop("model_name")), "model_name"),
        (_bad(lambda d: d.update(results={"a": 1})), "'results' must be a list"),
        (_bad(lambda d: d["results"][0].pop("metric_type")), "metric_type"),
        (_bad(lambda d: d["results"][1].update(metric_value="0.5")), "finite number"),
        (_bad(lambda d: d["results"][1].update(metric_value=float("nan"))), "finite number"),
        (_bad(lambda d: d["results"][2].update(score=1.0)), "unknown keys"),
        (_bad(lambda d: d["results"][2].update(dataset_split=3)), "dataset_split"),
        (_bad(lambda d: d.update(extra=[1])), "'extra' must be an object"),
        (_bad(lambda d: d.update(notes="x")), "unknown top-level keys"),
    ],
)
def test_bad_eval_results_raise_config_error(tmp_path, data, message):
    path = tmp_path / "eval_results.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        cards.read_eval_results(path)
    with pytest.raises(ConfigError, match=message):
        cards.write_model_card(tmp_path / "run", {"template": "default"}, data)
    assert not (tmp_path / "run" / "README.md").exists()


def test_unreadable_or_missing_eval_json(tmp_path):
    (tmp_path / "eval_results.json").write_text('{"model_name": "m", "results": [')
    with pytest.raises(ConfigError, match="not valid JSON"):
        cards.read_eval_results(tmp_path)
    with pytest.raises(CheckpointError, match="no evaluation results"):
        cards.read_eval_results(tmp_path / "elsewhere")


def test_plot_helpers(tmp_path, monkeypatch):
    bars = cards.save_bar_plot(tmp_path / "bars.png", {"seg": 0.3, "depth": 0.6}, "per-task", ylabel="score")
    assert bars.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="shape"):
        cards.save_heatmap(tmp_path / "h.png", np.zeros((2, 3)), ["a"], ["x", "y", "z"], "t")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plots extra were not installed
    with pytest.raises(MissingDependencyError, match=r"effhub\[plots\]"):
        cards.save_bar_plot(tmp_path / "b2.png", {"a": 1.0}, "t")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.png"]  # nothing half-written


def test_rewrite_card_with_a_repo_id_fills_the_usage_code(tmp_path, heatmap):
    run_dir = tmp_path / "run"
    spec = {**_spec(heatmap), "usage": f'model = AutoModel.from_pretrained("{cards.REPO_PLACEHOLDER}")'}
    cards.write_model_card(run_dir, spec, _eval_results())
    assert cards.REPO_PLACEHOLDER in (run_dir / "README.md").read_text()
    card = ModelCard.load(cards.rewrite_card(run_dir, repo_id="lab/toy-multitask"))
    assert 'from_pretrained("lab/toy-multitask")' in card.text and cards.REPO_PLACEHOLDER not in card.text
    assert json.loads((run_dir / "card_spec.json").read_text())["repo_id"] == "lab/toy-multitask"
    assert "lab/toy-multitask" in cards.rewrite_card(run_dir).read_text()  # recorded: a later rewrite keeps it
