"""A short DIME-FM run end to end (cache, distil, evaluate side by side, card, export, eval by the CLI), truly
unpaired batches, and the bad inputs of `effhub train dime-fm`."""

import json

import pytest
import torch

from effhub.cli import main
from effhub.errors import ConfigError, DatasetError
from effhub.models.dime_fm.recipe_dime_fm import DimeFmRecipe
from effhub.models.dime_fm.training_dime_fm import TEXT_STAGE_NAME, learning_rate_at, parameter_groups, train
from effhub.training import RunOptions

TINY = ["train.steps=3", "train.image_batch_size=8", "train.text_batch_size=8", "train.warmup_steps=1",
        "eval.zero_shot_samples=64", "eval.retrieval_pairs=32", "eval.probe_train=64", "eval.probe_test=64",
        "data.images=world:32", "data.texts=world:24", "student.hidden_size=16", "student.layers=1",
        "student.heads=2"]


def tiny_recipe(*overrides):
    from effhub.recipes import load_recipe

    return load_recipe("dime-fm", "demo", TINY + list(overrides))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dime") / "student"
    train(tiny_recipe(), RunOptions(output_dir=folder, progress=False))
    return folder


@pytest.mark.slow
def test_short_run_writes_a_student_with_side_by_side_figures(run_dir):
    results = json.loads((run_dir / "eval_results.json").read_text())
    extra = results["extra"]
    assert extra["vision_parameter_ratio"] < 0.25
    assert extra["teacher_zero_shot_accuracy"] > 0.5
    assert {r["metric_type"] for r in results["results"]} >= {"accuracy", "recall@1", "recall@5"}
    assert (run_dir.parent / "student-features" / "dime_fm_cache.json").is_file()  # built beside the run
    assert "DIME-FM" in (run_dir / "README.md").read_text()


@pytest.mark.slow
def test_export_loads_with_transformers_alone_and_cli_eval_runs(run_dir, tmp_path, capsys):
    from transformers import CLIPModel

    from effhub.models.dime_fm import DimeFmModel

    assert main(["export", str(run_dir), "--format", "clip", "--output", str(tmp_path / "clip")]) == 0
    clip, student = CLIPModel.from_pretrained(tmp_path / "clip").eval(), DimeFmModel.from_pretrained(run_dir).eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = student.image_embeddings(pixels)
        exported = clip.get_image_features(pixel_values=pixels).pooler_output
    assert torch.allclose(expected, exported / exported.norm(dim=-1, keepdim=True), atol=1e-6)
    assert main(["export", str(run_dir), "--format", "onnx", "--output", str(tmp_path / "x")]) == 2
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--zero-shot"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) >= {"student", "teacher", "ratios"}
    assert metrics["teacher"]["zero_shot"]["num_samples"] == 64


TEXT_STAGE = ["text_stage.steps=4", "text_stage.hidden_size=16", "text_stage.layers=1", "text_stage.heads=2",
              "text_stage.image_batch_size=8", "text_stage.text_batch_size=8", "text_stage.warmup_steps=1"]


def test_second_stage_distils_a_smaller_text_tower_with_the_vision_tower_frozen(tmp_path):
    from safetensors.torch import load_file
    from transformers import CLIPModel

    from effhub.models.dime_fm import DimeFmModel
    from effhub.models.dime_fm.convert_dime_fm import export_clip

    record = []
    folder = train(tiny_recipe(*TEXT_STAGE), RunOptions(output_dir=tmp_path / "run", progress=False), record=record)
    assert len(record) == 3 + 4  # the vision stage's batches, then the text stage's
    student = DimeFmModel.from_pretrained(folder).eval()
    assert student.config.text_tower == "distilled" and student.config.text_config.hidden_size == 16
    after_vision = load_file(str(folder / "checkpoints" / "distillation" / "model.safetensors"))
    final = student.state_dict()
    vision = [key for key in final if key.startswith(("vision_model.", "visual_projection."))]
    text = [key for key in final if key.startswith(("text_model.", "text_projection."))]
    assert vision and all(torch.equal(final[key], after_vision[key]) for key in vision)
    assert any(not torch.equal(final[key], after_vision[key]) for key in text)
    extra = json.loads((folder / "eval_results.json").read_text())["extra"]
    assert extra["text_parameter_ratio"] < 0.25
    assert extra["side_by_side"]["student"]["zero_shot_with_teacher_text"]["num_samples"] == 64
    assert "distilled in a second stage" in (folder / "README.md").read_text()
    export_clip(folder, tmp_path / "clip")
    clip = CLIPModel.from_pretrained(tmp_path / "clip").eval()
    ids = student.config.text_config.bos_token_id + torch.zeros(2, 5, dtype=torch.long)
    ids[:, 1:4] = torch.tensor([[5, 6, 7], [8, 9, 10]])
    ids[:, 4] = student.config.text_config.eos_token_id
    with torch.no_grad():
        exported = clip.get_text_features(input_ids=ids).pooler_output
    assert torch.allclose(student.text_embeddings(ids), exported / exported.norm(dim=-1, keepdim=True), atol=1e-6)


def test_batches_are_unpaired_even_from_one_paired_dataset(tmp_path):
    from effhub.data.captions import CaptionWorld, default_cache_dir

    pairs = CaptionWorld(cache_dir=default_cache_dir()).pairs(30, split="unpaired-training-test")
    pairs.save_to_disk(str(tmp_path / "pairs"))
    record = []
    recipe = tiny_recipe(f"data.images={tmp_path / 'pairs'}", f"data.texts={tmp_path / 'pairs'}",
                         "data.text_column=caption", "train.steps=6", "train.teacher_features=online")
    recipe.eval.zero_shot_samples = 8
    train(recipe, RunOptions(output_dir=tmp_path / "run", progress=False), record=record)
    assert len(record) == 6
    image_rows = {2 * row for images, _ in record for row in images}  # source rows of the images seen
    text_rows = {2 * row + 1 for _, texts in record for row in texts}  # source rows of the captions seen
    assert not image_rows & text_rows, "an image was trained with its own caption"
    # the two streams are shuffled independently: the text rows of a batch are not its image rows
    assert any(images != texts for images, texts in record)


def test_optimizer_groups_and_schedule():
    from effhub.models.dime_fm.features_dime_fm import load_teacher
    from effhub.models.dime_fm.training_dime_fm import build_student

    recipe = tiny_recipe()
    student = build_student(load_teacher("base"), recipe)
    groups = parameter_groups(student, student.vision_parameters())
    names = {id(p): n for n, p in student.named_parameters()}
    no_decay = {names[id(p)] for p in groups[1]["params"]}
    assert all(p.ndim >= 2 for p in groups[0]["params"])
    assert any("position_embedding" in n for n in no_decay) and any("class_embedding" in n for n in no_decay)
    t = recipe.train
    assert learning_rate_at(0, 100, recipe) == pytest.approx(t.warmup_lr)
    assert learning_rate_at(t.warmup_steps, 100, recipe) == pytest.approx(t.learning_rate)
    assert learning_rate_at(100, 100, recipe) == pytest.approx(t.min_lr)
    text = tiny_recipe(*TEXT_STAGE, "text_stage.warmup_steps=10", "text_stage.learning_rate=0.01")
    assert learning_rate_at(10, 100, text, TEXT_STAGE_NAME) == pytest.approx(0.01)
    assert learning_rate_at(10, 100, text) == pytest.approx(learning_rate_at(10, 100, recipe))  # the vision stage's


def test_overwrite_rebuilds_the_runs_own_feature_cache(tmp_path):
    folder = tmp_path / "student"
    train(tiny_recipe(), RunOptions(output_dir=folder, progress=False))
    info_file = tmp_path / "student-features" / "dime_fm_cache.json"
    info = json.loads(info_file.read_text())
    fingerprint = info["teacher_fingerprint"]
    info["teacher_fingerprint"] = "another-teacher"    # as if the teacher had been retrained since
    info_file.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="computed by teacher"):
        train(tiny_recipe(), RunOptions(output_dir=tmp_path / "kept", progress=False,
                                        extra={"features": str(info_file.parent)}))
    train(tiny_recipe(), RunOptions(output_dir=folder, progress=False, overwrite=True))
    assert json.loads(info_file.read_text())["teacher_fingerprint"] == fingerprint


def test_bad_inputs_of_a_run(tmp_path):
    with pytest.raises(ConfigError, match="joint space"):
        train(tiny_recipe("student.projection_dim=64"), RunOptions(output_dir=tmp_path / "a", progress=False))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DatasetError, match="no text"):
        train(tiny_recipe(f"data.texts={empty}"), RunOptions(output_dir=tmp_path / "b", progress=False))
    with pytest.raises(ConfigError, match="teacher_features"):
        train(tiny_recipe("train.teacher_features=sometimes"), RunOptions(output_dir=tmp_path / "c", progress=False))
    with pytest.raises(ConfigError, match="text_stage.steps"):
        train(tiny_recipe("text_stage.steps=-1"), RunOptions(output_dir=tmp_path / "d", progress=False))
    with pytest.raises(ConfigError, match="not divisible"):
        train(tiny_recipe(*TEXT_STAGE, "text_stage.heads=3"), RunOptions(output_dir=tmp_path / "e", progress=False))


def test_recipe_defaults_are_the_papers_losses():
    loss = DimeFmRecipe().loss
    assert (loss.vl, loss.pvl, loss.ud, loss.vl_temperature, loss.pvl_temperature, loss.ud_temperature) == (
        0.7, 0.3, 0.0, 1.0, 3.0, 7.0)
    assert loss.logit_scale is None  # the teacher's learned scale


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_process_run(tmp_path):
    from tests.launch import accelerate_launch

    from effhub.models.dime_fm import DimeFmModel

    overrides = [word for item in TINY + TEXT_STAGE for word in ("--set", item)]  # both stages, gathered batches
    result = accelerate_launch("-m", "effhub.train", "dime-fm", "--recipe", "demo", *overrides,
                               "--output-dir", str(tmp_path / "run"), "--no-progress")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert json.loads((tmp_path / "run" / "run_info.json").read_text())["world_size"] == 2
    assert json.loads((tmp_path / "run" / "eval_results.json").read_text())["extra"]["side_by_side"]["teacher"][
        "zero_shot"]["num_samples"] == 64
    assert DimeFmModel.from_pretrained(tmp_path / "run").config.text_tower == "distilled"
