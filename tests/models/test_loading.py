"""Bad files through every effhub model and config class: a truncated or corrupt checkpoint is a `CheckpointError`
naming the file, a config value of the wrong type or range a `ConfigError` naming the field (and the file)."""

import hashlib
import json

import pytest
from transformers import AutoConfig, AutoModel

import effhub  # noqa: F401  (registers the Auto classes)
from effhub.cli import main
from effhub.errors import CheckpointError, ConfigError
from effhub.models.adashare import AdaShareConfig, AdaShareModel
from effhub.models.tiny import EffhubTinyConfig, EffhubTinyForImageClassification
from effhub.recipes import load_recipe, recipe_to_dict

MODELS = {
    "adashare": (AdaShareModel, lambda: AdaShareConfig(base_width=2, head_type="light", head_hidden_size=4)),
    "tiny": (EffhubTinyForImageClassification, lambda: EffhubTinyConfig(hidden_size=4)),
}

# field -> a value of the wrong type (strings where numbers belong, numbers where strings belong, ...)
ADASHARE_WRONG = {
    "tasks": ["segmentation"], "task_types": "segmentation", "backbone_depth": "18", "base_width": "eight",
    "num_channels": 3.5, "head_type": 1, "aspp_rates": "6,12", "head_hidden_size": None, "head_dropout": "0.5",
    "policy_init": None, "init_neg_logits": "low", "gumbel_tau_init": [5], "gumbel_tau_decay": "fast",
    "hard_sampling": "yes", "curriculum_speed": 2.5, "task_loss_weights": [1, 1, 1], "reg_w_sparsity": "0.05",
    "reg_w_sharing": {"a": 1}, "sharing_weight_schedule": 0, "policy": "all", "ignore_index": "255",
    "initializer_range": True, "task_specific_bn": "yes", "segmentation_class_weights": [1.0, 2.0],
    "task_sparsity_weights": [0.5, 1, 1],
}
ADASHARE_OUT_OF_RANGE = {"backbone_depth": 19, "base_width": 0, "head_dropout": 1.5, "gumbel_tau_init": 0.0,
                         "gumbel_tau_decay": 1.5, "curriculum_speed": 0, "reg_w_sparsity": -1.0,
                         "initializer_range": -0.1, "tasks": {"segmentation": 0}, "aspp_rates": [6, 0],
                         "task_sparsity_weights": {"segmentation": -1.0}}
TINY_WRONG = {"num_channels": "3", "image_size": 16.5, "hidden_size": "32", "num_labels": "4",
              "logit_scale_init": "one", "image_mean": "0.5", "initializer_range": None}


def test_every_adashare_field_is_covered():
    import inspect

    fields = set(inspect.signature(AdaShareConfig.__init__).parameters) - {"self", "kwargs"}
    assert fields <= set(ADASHARE_WRONG), f"add a wrong value for {sorted(fields - set(ADASHARE_WRONG))}"
    tiny_fields = set(inspect.signature(EffhubTinyConfig.__init__).parameters) - {"self", "kwargs"}
    assert tiny_fields == set(TINY_WRONG)


@pytest.mark.parametrize("field,value", sorted(ADASHARE_WRONG.items()) + sorted(ADASHARE_OUT_OF_RANGE.items()),
                         ids=lambda item: str(item))
def test_adashare_config_refuses_a_wrong_value(field, value):
    with pytest.raises(ConfigError, match=field.split(".")[0]):
        AdaShareConfig(**{field: value})


@pytest.mark.parametrize("field,value", sorted(TINY_WRONG.items()))
def test_tiny_config_refuses_a_wrong_type(field, value):
    with pytest.raises(ConfigError, match=f"field '{field}'"):
        EffhubTinyConfig(**{field: value})


@pytest.mark.parametrize("method", sorted(MODELS))
def test_wrong_config_json_names_the_field_and_the_file(tmp_path, method):
    model_class, make_config = MODELS[method]
    make_config().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    field = "base_width" if method == "adashare" else "hidden_size"
    config[field] = "eight"
    (tmp_path / "config.json").write_text(json.dumps(config))
    config_class = model_class.config_class
    for load in (lambda: config_class.from_pretrained(tmp_path), lambda: model_class.from_pretrained(tmp_path),
                 lambda: config_class.from_json_file(tmp_path / "config.json")):
        with pytest.raises(ConfigError, match=f"config.json: .*field '{field}' is 'eight'.*no quotes") as caught:
            load()
        assert str(tmp_path) in str(caught.value)
    with pytest.raises(ConfigError, match=f"field '{field}' is 'eight'"):  # the Auto classes: the field, in one line
        AutoConfig.from_pretrained(tmp_path)


def test_backbone_depth_as_a_string_is_no_longer_accepted(tmp_path):
    AdaShareConfig(base_width=2).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["backbone_depth"] = "18"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="'backbone_depth' is '18' \\(a str\\)"):
        AdaShareModel.from_pretrained(tmp_path)


def _saved(tmp_path, method):
    model_class, make_config = MODELS[method]
    model_class(make_config()).save_pretrained(tmp_path)
    return model_class, tmp_path / "model.safetensors"


@pytest.mark.parametrize("damage", ["header", "half", "garbage"])
@pytest.mark.parametrize("method", sorted(MODELS))
def test_corrupt_weights_name_the_file(tmp_path, method, damage):
    model_class, weights = _saved(tmp_path, method)
    data = weights.read_bytes()
    weights.write_bytes({"header": data[:5], "half": data[: len(data) // 2], "garbage": b"x" * 64}[damage])
    for load in (model_class.from_pretrained, AutoModel.from_pretrained):
        with pytest.raises(CheckpointError, match="weight file '.*model.safetensors' .* is truncated or corrupt") \
                as caught:
            load(tmp_path)
        assert "SafetensorError" in type(caught.value.__cause__).__name__
        assert "Fix: download or copy it again" in str(caught.value)


@pytest.mark.parametrize("method", sorted(MODELS))
def test_missing_weights_name_the_folder(tmp_path, method):
    model_class, weights = _saved(tmp_path, method)
    weights.unlink()
    with pytest.raises(CheckpointError, match="has no weight file"):
        AutoModel.from_pretrained(tmp_path)


def _tree(folder):
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_effhub_eval_of_a_truncated_model_is_one_line(tmp_path, capsys):
    model_class, weights = _saved(tmp_path, "tiny")
    recipe = recipe_to_dict(load_recipe("tiny", "demo"))
    (tmp_path / "run_info.json").write_text(json.dumps({"method": "tiny", "recipe": recipe, "finished": True}))
    weights.write_bytes(weights.read_bytes()[:100])
    before = _tree(tmp_path)
    capsys.readouterr()
    assert main(["eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model.safetensors' of EffhubTinyForImageClassification is truncated" in err
    assert _tree(tmp_path) == before


def test_a_plain_transformers_model_of_a_method_names_the_file(tmp_path):
    """The clip-teacher is a plain `CLIPModel`: effhub's loaders (`effhub eval`, the shipped teacher) go through
    `load_pretrained`, which names the truncated file."""
    from transformers import CLIPConfig, CLIPModel

    from effhub.models.loading import load_pretrained

    small = {"hidden_size": 8, "intermediate_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1}
    CLIPModel(CLIPConfig(text_config=small, vision_config={**small, "image_size": 8, "patch_size": 4},
                         projection_dim=8)).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:10])
    with pytest.raises(CheckpointError, match="model.safetensors' of CLIPModel is truncated or corrupt"):
        load_pretrained(CLIPModel, tmp_path)


@pytest.mark.parametrize("method,other", [("adashare", "tiny"), ("tiny", "adashare")])
def test_a_folder_of_another_model_type_is_refused(tmp_path, method, other):
    _saved(tmp_path, other)
    model_class = MODELS[method][0]
    other_type = MODELS[other][0].config_class.model_type
    with pytest.raises(ConfigError, match=f"config.json: the config is of model type '{other_type}'"):
        model_class.from_pretrained(tmp_path)
    assert isinstance(AutoModel.from_pretrained(tmp_path), MODELS[other][0])  # the Auto class picks the right one
