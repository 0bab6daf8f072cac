"""load_metric: every shipped module loads offline through evaluate and documents itself; unknown names fail."""

import sys

import evaluate
import pytest

import effhub.metrics as metrics
from effhub.errors import ConfigError

CONFIGS = {
    "classification": {"top_k": (1, 2)},
    "depth_estimation": {},
    "multilabel": {"num_classes": 4},
    "multitask_delta": {},
    "semantic_segmentation": {"num_labels": 3},
    "surface_normals": {},
}


def test_shipped_metrics():
    assert metrics.list_metrics() == sorted(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_module_loads_with_info(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    module = metrics.load_metric(name, **CONFIGS[name])
    assert isinstance(module, evaluate.EvaluationModule)
    assert module.name == name
    for text in (module.description, module.citation, module.inputs_description):
        assert isinstance(text, str) and len(text) > 40
    assert "@" in module.citation


def test_evaluate_load_of_the_script_path(monkeypatch):
    # evaluate imports copies of scripts as `evaluate_modules.*` from the HF_MODULES_CACHE it saw first; this
    # test's HF_HOME is fresh, so forget the copies earlier tests imported
    for module_name in [m for m in sys.modules if m.startswith("evaluate_modules")]:
        monkeypatch.delitem(sys.modules, module_name)
    module = evaluate.load(str(metrics.metric_path("semantic_segmentation")), num_labels=3)
    assert module.name == "semantic_segmentation"
    assert module.compute(predictions=[[[0, 1]]], references=[[[0, 2]]])["pixel_accuracy"] == 0.5


def test_unknown_metric_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="semantic_segmentation") as error:
        metrics.load_metric("accuracy")
    assert "accuracy" in str(error.value)
