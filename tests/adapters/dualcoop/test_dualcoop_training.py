"""DualCoOp training on the run layer: a short run of the demo recipe, its folder, `effhub eval`, the zero-shot
setting, the recipes, and a 2-process run (slow)."""

import json

import pytest

from effhub.adapters.dualcoop.training_dualcoop import evaluate_run, train
from effhub.errors import ConfigError, RecipeError
from effhub.recipes import list_recipes, load_recipe
from effhub.training import RunOptions
from tests.launch import accelerate_launch

QUICK = ["train.steps=4", "train.batch_size=8", "data.train_size=48", "data.test_size=24",
         "train.eval_batch_size=24"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dualcoop") / "run"
    train(load_recipe("dualcoop", "demo", QUICK), RunOptions(output_dir=folder, progress=False,
                                                              extra={"label_ratio": 0.3}))
    return folder


def test_run_folder_is_an_adapter_folder_with_mask_and_card(run_dir):
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "eval_results.json",
                 "partial_labels/partial_label_0.30.npz", "run_info.json"):
        assert (run_dir / name).is_file(), name
    card = (run_dir / "README.md").read_text()
    assert "base_model: effhub/clip-teacher-base" in card and "import effhub" in card
    assert "EFFHUB_DUALCOOP" in card and "sun2022dualcoop" in card
    results = json.loads((run_dir / "eval_results.json").read_text())
    assert results["extra"]["label_ratio"] == 0.3
    assert {r["metric_type"] for r in results["results"]} >= {"map", "of1_top3"}
    config = json.loads((run_dir / "adapter_config.json").read_text())
    assert config["loss_weight"] == pytest.approx(0.04) and config["base_model_name_or_path"] == "effhub-shipped:base"
    log = [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()]
    known = [row["contexts/dualcoop/known_labels"] for row in log if "contexts/dualcoop/known_labels" in row]
    assert known and all(0.15 < value < 0.45 for value in known)


def test_eval_reproduces_the_recorded_figures(run_dir):
    recorded = json.loads((run_dir / "eval_results.json").read_text())["extra"]["scores"]["test"]
    measured = evaluate_run(run_dir)["test"]
    assert measured["map"] == pytest.approx(recorded["map"], abs=1e-6)


def test_zero_shot_setting_reports_zsl_and_gzsl(tmp_path):
    folder = train(load_recipe("dualcoop", "demo-zero-shot", QUICK + ["data.num_train_classes=5"]),
                   RunOptions(output_dir=tmp_path / "zsl", progress=False))
    scores = json.loads((folder / "eval_results.json").read_text())["extra"]["scores"]
    assert scores["zsl"]["num_classes"] == 16 and scores["gzsl"]["num_classes"] == 64
    assert len(json.loads((folder / "adapter_config.json").read_text())["class_names"]) == 48


def test_recipes_are_shipped_and_checked():
    assert {"demo", "demo-zero-shot", "voc2007", "coco2014"} <= set(list_recipes("dualcoop")["dualcoop"])
    with pytest.raises(RecipeError, match="class-specific"):
        load_recipe("dualcoop", "demo-zero-shot", ["model.class_specific=true"])
    with pytest.raises(RecipeError, match="label_ratio"):
        load_recipe("dualcoop", "demo", ["data.label_ratio=0"])
    with pytest.raises(ConfigError, match="label-ratio"):
        train(load_recipe("dualcoop", "demo", QUICK), RunOptions(output_dir="unused", extra={"label_ratio": "x"}))


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_process_training(tmp_path):
    run = tmp_path / "ddp"
    result = accelerate_launch("-m", "effhub.train", "dualcoop", "--recipe", "demo", "--label-ratio", "0.5",
                               "--output-dir", str(run), "--no-progress", *[f"--set={item}" for item in QUICK])
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "run_info.json").read_text())["world_size"] == 2
    assert (run / "adapter_model.safetensors").is_file() and (run / "eval_results.json").is_file()


def test_map_is_exact_when_scores_crowd_near_one():
    import torch

    from effhub.adapters.dualcoop.training_dualcoop import multilabel_metrics

    # class 0: positives ranked first but all within one histogram bin of the negatives; class 1: the reverse
    probs = torch.tensor([[0.999990, 0.2], [0.999985, 0.3], [0.999980, 0.9], [0.999975, 0.8]], dtype=torch.float64)
    targets = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1]])
    scores = multilabel_metrics(torch.logit(probs).float(), targets, top_k=1)
    assert scores["map"] == pytest.approx(100.0)
    assert scores["map_histogram"] < 100.0 and scores["map_error_bound"] > 0


def test_ranking_uses_presence_logits_where_float32_probabilities_tie():
    import torch

    from effhub.adapters.dualcoop.layer import presence_logits, presence_probabilities
    from effhub.adapters.dualcoop.training_dualcoop import multilabel_metrics
    from effhub.models.clip_teacher.probing import average_precisions

    # confident logits: the positives (the two highest) round to the same float32 probability as a negative
    negative_logit = torch.zeros(6)
    positive_logit = torch.tensor([16.9, 17.5, 17.0, 16.0, 2.0, 1.0])
    logits = torch.stack([negative_logit, positive_logit], dim=1)[..., None]  # [6 images, 2, 1 class]
    targets = torch.tensor([[0], [1], [1], [0], [0], [1]])
    probs = presence_probabilities(logits)
    assert len(torch.unique(probs[:3])) == 1  # the float32 ties the ranking must not go through
    by_probs = float(average_precisions(probs.numpy(), targets.numpy())[0])
    metrics = multilabel_metrics(presence_logits(logits), targets, top_k=1)
    exact = (1 + 1 + 3 / 6) / 3
    assert metrics["map"] == pytest.approx(100 * exact) and by_probs < exact


def test_top_k_ranks_logits_before_the_sigmoid():
    import torch

    from effhub.metrics import multilabel_statistics

    # both classes' float32 probabilities round to 1: only the logits say that class 1 is the top one
    logits = torch.tensor([[17.0, 17.5]])
    assert torch.equal(logits.sigmoid()[0, 0], logits.sigmoid()[0, 1])
    statistics = multilabel_statistics(logits, torch.tensor([[0, 1]]), top_k=1, from_logits=True)
    assert statistics["top_k_true_positive"].tolist() == [0, 1]
