"""Training, evaluation and card of the tiny reference method, on effhub's shared training loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...citations import bibtex


@dataclass
class TinyModelRecipe:
    """Model size of the tiny classifier."""

    hidden_size: int = 32


@dataclass
class TinyDataRecipe:
    """Generated blob data: sample counts and pixel noise."""

    train_samples: int = 1024
    test_samples: int = 256
    noise: float = 0.15
    image_size: int = 16


@dataclass
class TinyTrainRecipe:
    """Optimisation of the single training phase."""

    steps: int = 60
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 0.0


@dataclass
class TinyRecipe:
    """A recipe of the tiny method (`effhub/models/tiny/recipes/<name>.yaml`)."""

    description: str = ""
    seed: int = 0
    model: TinyModelRecipe = field(default_factory=TinyModelRecipe)
    data: TinyDataRecipe = field(default_factory=TinyDataRecipe)
    train: TinyTrainRecipe = field(default_factory=TinyTrainRecipe)


DATASET_NAME = "effhub generated colour blobs"
DATASET_TYPE = "effhub/blobs"


def build_datasets(recipe: TinyRecipe):
    """The train and test splits of the generated blobs (different seeds, so no image is shared)."""
    from ...data.classification.blobs import BlobsConfig, build_blobs_dataset

    blobs = BlobsConfig(size=recipe.data.image_size, noise=recipe.data.noise)
    train_split = build_blobs_dataset(recipe.data.train_samples, seed=recipe.seed * 2 + 1, config=blobs)
    test_split = build_blobs_dataset(recipe.data.test_samples, seed=recipe.seed * 2 + 2, config=blobs)
    return train_split, test_split


def build_model(recipe: TinyRecipe):
    """A freshly initialised tiny classifier for the recipe."""
    from ...data.classification.blobs import BLOB_CLASSES
    from .configuration_tiny import EffhubTinyConfig
    from .modeling_tiny import EffhubTinyForImageClassification

    config = EffhubTinyConfig(
        image_size=recipe.data.image_size,
        hidden_size=recipe.model.hidden_size,
        id2label=dict(enumerate(BLOB_CLASSES)),
        label2id={name: index for index, name in enumerate(BLOB_CLASSES)},
    )
    return EffhubTinyForImageClassification(config)


def _classification_step(model, batch):
    from ...metrics import classification_statistics

    logits = model(pixel_values=batch["pixel_values"]).logits
    return classification_statistics(logits, batch["label"], per_sample=True)


def train(recipe: TinyRecipe, options):
    """Train the tiny classifier, evaluate it on the test split, and write model, evaluation and card to the run.

    Args:
        recipe (`TinyRecipe`): the recipe.
        options (`effhub.training.RunOptions`): output folder, seed, resume, precision, ...
    """
    import torch

    from ...recipes import recipe_to_dict
    from ...training import Phase, Run, Update

    seed = options.seed_or(recipe.seed)
    torch.manual_seed(seed)
    train_split, test_split = build_datasets(recipe)
    model = build_model(recipe)
    phase = Phase(
        name="train",
        steps=recipe.train.steps,
        batch_size=recipe.train.batch_size,
        updates=[
            Update(
                name="weights",
                dataset="train",
                loss=lambda model, batch, ctx: model(pixel_values=batch["pixel_values"], labels=batch["label"]).loss,
                parameters=lambda model: model.parameters(),
                optimizer=lambda params: torch.optim.AdamW(
                    params, lr=recipe.train.learning_rate, weight_decay=recipe.train.weight_decay
                ),
                scheduler=lambda optimizer, total: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total),
            )
        ],
    )
    with Run(options, method="tiny", seed=seed, recipe=recipe_to_dict(recipe)) as run:
        model = run.train_stage("train", model, [phase], {"train": train_split}).model
        statistics = run.evaluate(model, test_split, _classification_step, batch_size=128)
        run.save_pretrained(model)
        if run.is_main_process:
            write_results_and_card(run.layout.root, recipe, statistics, model)
        run.wait_for_everyone()
    return run.layout.root


def write_results_and_card(run_dir, recipe: TinyRecipe, statistics, model):
    """Turn summed classification statistics into `eval_results.json` and the model card of the run."""
    from ...hub.cards import write_eval_results, write_model_card
    from ...metrics import classification_scores
    from ...recipes import recipe_to_dict

    scores = classification_scores({key: value.cpu() for key, value in statistics.items()})
    eval_results = {
        "model_name": "effhub-tiny",
        "results": [
            {
                "task_type": "image-classification",
                "task_name": "Image classification",
                "dataset_type": DATASET_TYPE,
                "dataset_name": DATASET_NAME,
                "dataset_split": "test",
                "metric_type": "accuracy",
                "metric_name": "Accuracy",
                "metric_value": float(scores["accuracy"]),
            }
        ],
        "extra": {"test_samples": int(statistics["count"].item())},
    }
    write_eval_results(run_dir, **eval_results)
    card_spec = {
        "template": "default",
        "model_name": "effhub-tiny",
        "license": "mit",
        "tags": ["image-classification", "effhub-tiny"],
        "datasets": [DATASET_TYPE],
        "pipeline_tag": "image-classification",
        "summary": "A tiny convolutional classifier trained by effhub's reference method on generated colour blobs. "
        "It exists to exercise effhub end to end: training, evaluation, cards and the Hub.",
        "model_details": {
            "parameters": sum(p.numel() for p in model.parameters()),
            "image size": f"{recipe.data.image_size}x{recipe.data.image_size}",
            "classes": len(model.config.id2label),
            "test images": int(statistics["count"].item()),
        },
        "usage": "import effhub\nfrom transformers import AutoModel\n"
        "model = AutoModel.from_pretrained(\"<repo or folder>\")\n"
        "logits = model(pixel_values).logits",
        "training": recipe_to_dict(recipe),
        "citation": bibtex("effhub"),  # the tiny reference method has no paper of its own
    }
    return write_model_card(run_dir, card_spec, eval_results)


def evaluate_run(run_dir, options=None) -> dict:
    """`effhub eval <run>`: accuracy of a saved tiny model on the test split of its recipe."""
    from ...metrics import classification_scores
    from ...recipes import build_dataclass
    from ...training import RunLayout, evaluate
    from .modeling_tiny import EffhubTinyForImageClassification

    layout = RunLayout(run_dir)
    recipe = build_dataclass(TinyRecipe, layout.read_run_info()["recipe"])
    model = EffhubTinyForImageClassification.from_pretrained(layout.root)
    _, test_split = build_datasets(recipe)
    totals = evaluate(model, test_split, _classification_step, batch_size=128)
    return {"split": "test", **classification_scores({key: value.cpu() for key, value in totals.items()})}
