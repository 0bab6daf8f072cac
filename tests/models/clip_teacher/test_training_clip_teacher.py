"""The clip-teacher recipe end to end: CLI training, the run folder as a transformers model, evaluation, card, hub."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.launch import accelerate_launch

# a few-step run on little data: checks the plumbing, not the teacher's quality (see the slow test below)
QUICK_OVERRIDES = (
    "train.steps=6", "train.batch_size=16", "train.warmup_steps=2", "world.train_pairs=160", "world.test_pairs=40",
    "world.zero_shot_samples=64", "world.tokenizer_texts=400", "world.cache=false", "model.text_layers=1",
    "model.vision_layers=1", "model.projection_dim=32", "model.text_hidden_size=32", "model.vision_hidden_size=32",
    "pretrain.steps=4", "pretrain.batch_size=16", "pretrain.warmup_steps=2", "pretrain.single_object_images=64",
    "pretrain.object_steps=3", "pretrain.multi_object_images=32", "pretrain.presence_weight=1.0",
    "pretrain.presence_regions=true",
)


def run_cli(*arguments, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "effhub", *arguments], capture_output=True, text=True, env=env,
                          timeout=timeout)


def overrides(values):
    return [flag for value in values for flag in ("--set", value)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("clip-teacher") / "run"
    result = run_cli("train", "clip-teacher", "--recipe", "demo", "--output-dir", str(run), "--no-progress",
                     *overrides(QUICK_OVERRIDES))
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def test_run_folder_is_a_model_folder(run_dir):
    from huggingface_hub import ModelCard

    names = {path.name for path in run_dir.iterdir()}
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "tokenizer_config.json",
            "vocab.json", "merges.txt", "README.md", "eval_results.json", "run_info.json", "checkpoints",
            "logs"} <= names
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["method"] == "clip-teacher" and info["recipe"]["train"]["steps"] == 6
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model_type"] == "clip" and config["architectures"] == ["CLIPModel"]
    assert config["text_config"]["eos_token_id"] == len(json.loads((run_dir / "vocab.json").read_text())) - 1
    evaluation = json.loads((run_dir / "eval_results.json").read_text())
    card = ModelCard.load(run_dir / "README.md")
    assert card.data.pipeline_tag == "zero-shot-image-classification"
    assert [r.metric_value for r in card.data.eval_results] == [r["metric_value"] for r in evaluation["results"]]
    assert {r["metric_type"] for r in evaluation["results"]} == {"accuracy", "top5_accuracy", "recall@1", "recall@5"}


def test_locked_contrastive_stage_leaves_the_pretrained_vision_tower_as_it_was(run_dir):
    import math

    from safetensors.torch import load_file

    stages = json.loads((run_dir / "checkpoints" / "stages.json").read_text())
    assert list(stages["stages"]) == ["vision-pretraining", "contrastive"]
    pretrained = load_file(run_dir / "checkpoints" / "vision-pretraining" / "model.safetensors")
    final = load_file(run_dir / "model.safetensors")
    vision = [key for key in final if key.startswith("vision_model.")]
    assert vision and all(torch.equal(final[key], pretrained[key]) for key in vision)
    assert any(key.startswith("head.") for key in pretrained) and not any(key.startswith("head.") for key in final)
    # the objects phase ran after the single-object one, through the same colour and shape heads, with a presence
    # head per colour-shape class; neither head is part of the CLIP model
    assert pretrained["head.weight"].shape[0] == 8 + 8
    assert pretrained["presence_head.weight"].shape[0] == 8 * 8
    assert not any(key.startswith("presence_head.") for key in final)
    logged = (run_dir / "logs" / "metrics.jsonl").read_text()
    assert "supervised/classes/loss" in logged and "objects/classes/loss" in logged
    # mean pooling: the (only, hence last) vision layer's query projection stayed zero through both stages
    assert not final["vision_model.encoder.layers.0.self_attn.q_proj.weight"].any()
    # the contrastive stage trained the text side: the temperature left CLIP's initial 1/0.07
    assert not math.isclose(float(final["logit_scale"]), math.log(1 / 0.07), abs_tol=1e-4)


def test_whitened_projection_run_keeps_the_whitening_of_its_locked_tower(tmp_path):
    from transformers import CLIPModel

    from effhub.data.captions import SPLIT_NAMES, CaptionWorld
    from effhub.models.clip_teacher.calibration import whiten_visual_projection
    from effhub.models.clip_teacher.evaluation import images_to_uint8
    from effhub.models.clip_teacher.processing import pixel_values_from_uint8

    run = tmp_path / "run"
    result = run_cli("train", "clip-teacher", "--recipe", "demo", "--output-dir", str(run), "--no-progress",
                     *overrides(QUICK_OVERRIDES + ("train.visual_projection=whitened", "train.whitening_images=64")))
    assert result.returncode == 0, result.stderr[-3000:]
    model = CLIPModel.from_pretrained(run).eval()
    trained_projection = model.visual_projection.weight.detach().clone()
    # the same map, computed again from the final (locked, hence pre-trained) tower on the same first 64 pairs
    pairs = CaptionWorld().pairs(160, seed=0, split=SPLIT_NAMES["teacher"]["train"])
    whiten_visual_projection(model, pixel_values_from_uint8(images_to_uint8(pairs["image"][:64])))
    assert torch.allclose(trained_projection, model.visual_projection.weight, atol=1e-5)
    assert "fixed at the whitening" in (run / "README.md").read_text()


def test_tagging_stage_from_a_teacher_keeps_its_vision_tower_and_drops_its_scalars(run_dir, tmp_path):
    from safetensors.torch import load_file

    run = tmp_path / "tagged"
    result = run_cli("train", "clip-teacher", "--recipe", "demo", "--output-dir", str(run), "--no-progress",
                     *overrides(QUICK_OVERRIDES + ("tagging.steps=4", "tagging.batch_size=16",
                                                   "tagging.warmup_steps=1", f"tagging.start_from={run_dir}",
                                                   "train.center_class_prompts=true")))
    assert result.returncode == 0, result.stderr[-3000:]
    # only the tagging stage ran, on the start teacher's weights and tokenizer
    assert list(json.loads((run / "checkpoints" / "stages.json").read_text())["stages"]) == ["tagging"]
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):  # the start's tokenizer, saved as it was
        assert (run / name).read_text() == (run_dir / name).read_text(), name
    start, final = load_file(run_dir / "model.safetensors"), load_file(run / "model.safetensors")
    assert set(final) == set(start)  # a plain CLIPModel: the tagger's scalars are not part of it
    vision = [key for key in final if key.startswith("vision_model.")]
    assert vision and all(torch.equal(final[key], start[key]) for key in vision)
    assert not torch.equal(final["text_projection.weight"], start["text_projection.weight"])
    # the prompt centring runs after the tagging stage, the last one that trains the text side: it projects one
    # direction out of the text projection, whose smallest singular value is then zero
    singular_values = torch.linalg.svdvals(final["text_projection.weight"].double())
    assert singular_values[-1] < 1e-6 * singular_values[0]
    assert torch.linalg.svdvals(start["text_projection.weight"].double())[-1] > 1e-3 * singular_values[0]
    logged = (run / "logs" / "metrics.jsonl").read_text()
    assert "tagging/tags/tagging_loss" in logged and "tagging/tags/contrastive_loss" in logged
    card = (run / "README.md").read_text()
    assert "learned to tag its scenes" in card and "Tag2Text" in card


def test_transformers_alone_loads_and_classifies(run_dir):
    script = textwrap.dedent(
        f"""
        import sys
        from PIL import Image
        from transformers import AutoProcessor, CLIPModel, pipeline
        model = CLIPModel.from_pretrained({str(run_dir)!r})
        processor = AutoProcessor.from_pretrained({str(run_dir)!r})
        assert type(processor).__name__ == "CLIPProcessor", type(processor)
        classify = pipeline("zero-shot-image-classification", model={str(run_dir)!r})
        out = classify(Image.new("RGB", (48, 48), (200, 30, 30)), candidate_labels=["a red circle", "a blue square"])
        assert sorted(o["label"] for o in out) == ["a blue square", "a red circle"], out
        assert abs(sum(o["score"] for o in out) - 1.0) < 1e-4
        assert not any(name == "effhub" or name.startswith("effhub.") for name in sys.modules)
        print("OK")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_eval_cli_reproduces_the_training_figures(run_dir):
    result = run_cli("eval", str(run_dir), "--zero-shot")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout)
    recorded = {r["metric_type"] + r["dataset_split"]: r["metric_value"]
                for r in json.loads((run_dir / "eval_results.json").read_text())["results"]}
    assert abs(metrics["zero_shot"]["accuracy"] - recorded["accuracysingle-object-test"]) < 1e-6
    assert metrics["zero_shot"]["num_classes"] == 64 and metrics["retrieval"]["num_pairs"] == 40


def test_eval_of_a_folder_that_is_no_run_fails_clearly(tmp_path):
    from effhub.errors import CheckpointError
    from effhub.models.clip_teacher.evaluation import evaluate_run

    with pytest.raises(CheckpointError, match="Fix:"):
        evaluate_run(tmp_path)


def test_round_trip_through_the_local_hub(run_dir, hub_repo_id, hub_url):
    from transformers import AutoProcessor, CLIPModel

    from effhub.hub.publish import push_folder

    push_folder(run_dir, hub_repo_id, endpoint=hub_url)
    reloaded = CLIPModel.from_pretrained(hub_repo_id)
    local = CLIPModel.from_pretrained(run_dir)
    for (name, value), (_, expected) in zip(reloaded.state_dict().items(), local.state_dict().items()):
        torch.testing.assert_close(value, expected, msg=name)
    processor = AutoProcessor.from_pretrained(hub_repo_id)
    assert processor.tokenizer("a red circle")["input_ids"] == AutoProcessor.from_pretrained(run_dir).tokenizer(
        "a red circle")["input_ids"]


def test_recipe_for_another_world_version_is_refused():
    from effhub.errors import ConfigError
    from effhub.models.clip_teacher.training_clip_teacher import build_world
    from effhub.recipes import load_recipe

    recipe = load_recipe("clip-teacher", "demo", ["world.version=99"])
    with pytest.raises(ConfigError, match="world.version"):
        build_world(recipe)
    with pytest.raises(ConfigError, match="unknown key"):
        load_recipe("clip-teacher", "demo", ["train.stepz=3"])


@pytest.mark.multiprocess
def test_two_process_training(tmp_path):
    run = tmp_path / "run"
    result = accelerate_launch("-m", "effhub.train", "clip-teacher", "--recipe", "demo", "--output-dir", str(run),
                               "--no-progress", *overrides(QUICK_OVERRIDES))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "run_info.json").read_text())["world_size"] == 2
    assert (run / "model.safetensors").is_file() and (run / "eval_results.json").is_file()


@pytest.mark.slow
def test_demo_recipe_gives_a_meaningful_teacher(tmp_path):
    """The shipped demo recipe: zero-shot accuracy clearly above chance (1/64) and clearly below 100%."""
    run = tmp_path / "run"
    result = run_cli("train", "clip-teacher", "--recipe", "demo", "--output-dir", str(run), "--no-progress",
                     "--set", "world.cache=false")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads((run / "eval_results.json").read_text())
    accuracy = next(r["metric_value"] for r in evaluation["results"] if r["metric_type"] == "accuracy")
    chance = evaluation["extra"]["zero_shot_chance"]
    assert 5 * chance < accuracy < 0.9, accuracy
