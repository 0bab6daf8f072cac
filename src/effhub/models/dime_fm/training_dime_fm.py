"""Training and evaluation of a DIME-FM student (Sun et al., ICCV 2023, arXiv 2303.18232).

A run: load the teacher → read (or build) the teacher-feature cache of the unpaired image and text sources → build
the student (`DimeFmModel.from_teacher`: the teacher's text tower, frozen, and a small vision tower projecting into
the teacher's joint space) → one stage, one phase, one update drawing an image batch and an independent text batch
per step (the run layer's multi-stream updates) and minimising the DIME-FM losses over the global batch → with
`text_stage.steps > 0`, the paper's second stage: a smaller text tower distilled with the same losses, the modalities
swapped (the vision tower frozen) → evaluate student and teacher side by side (zero-shot classification on the single-object split, retrieval R@1/R@5, a linear
probe) → save the student (a transformers model folder, with the teacher's processor) and its card.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import numpy as np

from ...errors import CheckpointError, ConfigError
from .recipe_dime_fm import DimeFmRecipe

METHOD_NAME = "dime-fm"
MODEL_NAME = "effhub-dime-fm"
STAGE_NAME = "distillation"
TEXT_STAGE_NAME = "text-distillation"
TEACHER_FEATURES = ("cache", "online")


# ---------------------------------------------------------------------------------------------------- building
def check_recipe(recipe: DimeFmRecipe) -> None:
    """Refuse recipe values that would only fail later in the run."""
    if recipe.train.teacher_features not in TEACHER_FEATURES:
        raise ConfigError(f"train.teacher_features is {recipe.train.teacher_features!r}",
                          f"use one of {', '.join(TEACHER_FEATURES)}")
    if recipe.loss.logit_scale is not None and not recipe.loss.logit_scale > 0:
        raise ConfigError(f"loss.logit_scale is {recipe.loss.logit_scale}", "use a positive scale or null (teacher's)")
    if recipe.text_stage.steps < 0:
        raise ConfigError(f"text_stage.steps is {recipe.text_stage.steps}",
                          "use 0 (keep the teacher's text tower) or a positive number of steps")
    distillation_weights(recipe)
    student_text_config(recipe)


def distillation_weights(recipe: DimeFmRecipe):
    """The recipe's loss weights and temperatures as the losses' `DistillationWeights` (which checks them)."""
    from dataclasses import fields

    from .losses_dime_fm import DistillationWeights

    return DistillationWeights(**{f.name: getattr(recipe.loss, f.name) for f in fields(DistillationWeights)})


def student_vision_config(recipe: DimeFmRecipe, teacher) -> dict:
    """The `CLIPVisionConfig` values of the student's tower (image size and activation from the teacher's)."""
    s = recipe.student
    if s.hidden_size % s.heads:
        raise ConfigError(f"student hidden size {s.hidden_size} is not divisible by {s.heads} heads",
                          "pick a head count that divides the hidden size")
    image_size = teacher.config.vision_config.image_size
    if image_size % s.patch_size:
        raise ConfigError(f"the teacher's image size {image_size} is not a multiple of patch size {s.patch_size}",
                          "pick a patch size that divides the image size")
    return {"hidden_size": s.hidden_size, "intermediate_size": s.hidden_size * s.mlp_ratio,
            "num_hidden_layers": s.layers, "num_attention_heads": s.heads, "image_size": image_size,
            "patch_size": s.patch_size, "hidden_act": teacher.config.vision_config.hidden_act}


def student_text_config(recipe: DimeFmRecipe) -> dict | None:
    """The `CLIPTextConfig` sizes of the text tower the second stage distils, or `None` without a text stage (the
    student keeps the teacher's; vocabulary, positions and special tokens always stay the teacher's)."""
    t = recipe.text_stage
    if not t.steps:
        return None
    if t.hidden_size % t.heads:
        raise ConfigError(f"text_stage.hidden_size {t.hidden_size} is not divisible by {t.heads} heads",
                          "pick a head count that divides the hidden size")
    return {"hidden_size": t.hidden_size, "intermediate_size": t.hidden_size * t.mlp_ratio,
            "num_hidden_layers": t.layers, "num_attention_heads": t.heads}


def build_student(teacher, recipe: DimeFmRecipe):
    """A freshly initialised student of `recipe` for `teacher` (a `features_dime_fm.Teacher`)."""
    from .modeling_dime_fm import DimeFmModel

    return DimeFmModel.from_teacher(
        teacher.model, student_vision_config(recipe, teacher.model), teacher_name_or_path=teacher.teacher_id,
        freeze_text_tower=recipe.student.freeze_text_tower, vision_pooling=recipe.student.pooling,
        logit_scale=recipe.loss.logit_scale, projection_dim=recipe.student.projection_dim,
        text_config=student_text_config(recipe),
    )


def parameter_groups(model, params) -> list[dict]:
    """AdamW groups: weight decay on matrices only; none on 1-d parameters (norms, biases) and embeddings (class,
    position, token), as CLIP and DIME-FM (the clip-teacher's grouping)."""
    from ..clip_teacher.training_clip_teacher import parameter_groups as clip_groups

    groups = clip_groups(model, params)
    return [{"params": groups["decay"], "decay": True},
            {"params": groups["no_decay"] + groups["temperature"], "decay": False}]


def peak_schedule(recipe: DimeFmRecipe, stage: str = STAGE_NAME) -> tuple[float, int]:
    """`(learning_rate, warmup_steps)` of a stage: `train`'s for the vision stage, `text_stage`'s for the text one."""
    source = recipe.text_stage if stage == TEXT_STAGE_NAME else recipe.train
    return source.learning_rate, source.warmup_steps


def build_optimizer(model, params, recipe: DimeFmRecipe, stage: str = STAGE_NAME):
    """AdamW, betas (0.9, 0.999), eps 1e-8, `train.weight_decay` on the decayed group."""
    import torch

    groups = [{"params": group["params"], "weight_decay": recipe.train.weight_decay if group["decay"] else 0.0}
              for group in parameter_groups(model, list(params)) if group["params"]]
    return torch.optim.AdamW(groups, lr=peak_schedule(recipe, stage)[0], betas=(0.9, 0.999), eps=1e-8)


def learning_rate_at(step: int, total: int, recipe: DimeFmRecipe, stage: str = STAGE_NAME) -> float:
    """Linear warm-up from `warmup_lr` to the stage's learning rate over its warm-up steps, then cosine decay to
    `min_lr`."""
    t = recipe.train
    peak, warmup_steps = peak_schedule(recipe, stage)
    if step < warmup_steps:
        return t.warmup_lr + (peak - t.warmup_lr) * step / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
    return t.min_lr + 0.5 * (peak - t.min_lr) * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer, total: int, recipe: DimeFmRecipe, stage: str = STAGE_NAME):
    import torch

    peak = peak_schedule(recipe, stage)[0]
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_at(step, total, recipe, stage) / peak)


# ---------------------------------------------------------------------------------------------------- data
class EmbeddingRows:
    """Map-style rows of cached text embeddings: `{"teacher_embeds": (D,), "row": i}`."""

    def __init__(self, embeds: np.ndarray):
        self.embeds = embeds

    def __len__(self) -> int:
        return len(self.embeds)

    def __getitem__(self, index: int) -> dict:
        return {"teacher_embeds": self.embeds[int(index)], "row": int(index)}


def collate_embeddings(items: list[dict]) -> dict:
    import torch

    return {"teacher_embeds": torch.as_tensor(np.stack([item["teacher_embeds"] for item in items])),
            "row": torch.tensor([item["row"] for item in items])}


def resolve_features(recipe: DimeFmRecipe, options) -> Path | None:
    features = options.extra.get("features") or recipe.features
    if features:
        return Path(features)
    if recipe.train.teacher_features == "online":
        return None
    return Path(str(options.output_dir).rstrip("/") + "-features")


def training_datasets(recipe: DimeFmRecipe, teacher, features: Path | None, accelerator=None,
                      build_cache: bool = False):
    """`(datasets, collate_fns, cache info)` of the distillation stage: `{"images": ..., "texts": ...}`.

    With a cache, image rows carry the teacher's embedding and text rows are the cached text embeddings (the
    teacher is never run); online, image rows carry pixels only and text rows the texts. With `build_cache` a
    missing cache is built first (from the recipe's sources).
    """
    from .features_dime_fm import (
        CACHE_INFO_FILE, ImageRows, PixelCollator, TextCollator, TextRows, cache_features, load_feature_cache,
        load_image_source, unpaired_sources,
    )

    if features is None:
        images, texts, _, _ = unpaired_sources(recipe.data.images, recipe.data.texts, recipe.data.image_column,
                                               recipe.data.text_column)
        return ({"images": ImageRows(images, teacher.processor, recipe.data.image_column), "texts": TextRows(texts)},
                {"images": PixelCollator(teacher.processor), "texts": TextCollator(teacher.processor.tokenizer)},
                None)
    if build_cache and not (features / CACHE_INFO_FILE).is_file():
        cache_features(teacher, recipe.data.images, recipe.data.texts, features, recipe.data.image_column,
                       recipe.data.text_column, accelerator=accelerator)
    cache = load_feature_cache(features, teacher)
    source = cache.info["images"]
    images, image_description = load_image_source(source["spec"], source.get("column", "image"))
    if source.get("rows_taken") == "even":  # one paired dataset split into unpaired halves
        images = images.select(range(0, len(images), 2))
    if image_description.get("fingerprint") != source.get("fingerprint") or len(images) != len(cache.image_embeds):
        raise ConfigError(f"the image source '{source['spec']}' changed since its features were cached in "
                          f"'{features}'", "cache the features again into a fresh folder")
    return ({"images": ImageRows(images, teacher.processor, source.get("column", "image"),
                                 extra={"teacher_embeds": cache.image_embeds}),
             "texts": EmbeddingRows(cache.text_embeds)},
            {"images": PixelCollator(teacher.processor), "texts": collate_embeddings}, cache.info)


def cached_texts(info: dict):
    """The text source a feature cache was computed from, read again and checked against the cache's record.

    Raises:
        `ConfigError`: the source changed since its features were cached.
    """
    from .features_dime_fm import load_text_source, unpaired_sources

    source = info["texts"]
    if source.get("kind") == "same-as-images":  # the odd rows of the image dataset
        images = info["images"]
        _, texts, _, description = unpaired_sources(images["spec"], source["spec"], images.get("column", "image"),
                                                    source.get("column", "text"))
    else:
        texts, description = load_text_source(source["spec"], source.get("column", "text"))
    if description.get("fingerprint") != source.get("fingerprint") or len(texts) != source.get("rows"):
        raise ConfigError(f"the text source '{source['spec']}' changed since its features were cached",
                          "cache the features again into a fresh folder")
    return texts


def text_stage_datasets(recipe: DimeFmRecipe, teacher, features: Path | None):
    """`(datasets, collate_fns)` of the text stage: `{"images": ..., "texts": ...}`.

    With a cache, image rows are the cached image embeddings (no pixels: the student's vision tower plays no part)
    and text rows are the texts with their cached embeddings; online, image rows carry pixels and text rows the texts.
    """
    from .features_dime_fm import (
        ImageRows,
        PixelCollator,
        TextCollator,
        TextRows,
        load_feature_cache,
        unpaired_sources,
    )

    tokenizer = teacher.processor.tokenizer
    if features is None:
        images, texts, _, _ = unpaired_sources(recipe.data.images, recipe.data.texts, recipe.data.image_column,
                                               recipe.data.text_column)
        return ({"images": ImageRows(images, teacher.processor, recipe.data.image_column), "texts": TextRows(texts)},
                {"images": PixelCollator(teacher.processor), "texts": TextCollator(tokenizer)})
    cache = load_feature_cache(features, teacher)
    texts = cached_texts(cache.info)
    return ({"images": EmbeddingRows(cache.image_embeds),
             "texts": TextRows(texts, extra={"teacher_embeds": cache.text_embeds})},
            {"images": collate_embeddings, "texts": TextCollator(tokenizer)})


# ---------------------------------------------------------------------------------------------------- loss
def make_loss(recipe: DimeFmRecipe, teacher=None, record=None, modality: str = "image"):
    """The loss of a distillation update; `teacher` (a `CLIPModel`) only for online teacher features.

    Args:
        record (`list`, *optional*): receives `(image rows, text rows)` of every batch (tests of unpaired sampling).
        modality (`str`): the student's side being distilled: `"image"` (the vision stage) or `"text"` (the text
            stage: DIME-FM's losses with the modalities swapped, the teacher's image embeddings as the other side and
            its text embeddings as pseudo images).
    """
    import torch

    from .features_dime_fm import _image_step, _text_step
    from .losses_dime_fm import dime_fm_loss, gather_with_local_grad

    weights = distillation_weights(recipe)

    def loss(model, batch, ctx):
        images, texts = batch["images"], batch["texts"]
        if record is not None:
            record.append((images["row"].tolist(), texts["row"].tolist()))
        if modality == "image":
            student = model(pixel_values=images["pixel_values"]).image_embeds
        else:
            student = model(input_ids=texts["input_ids"], attention_mask=texts["attention_mask"]).text_embeds
        if teacher is None:
            teacher_images, teacher_texts = images["teacher_embeds"], texts["teacher_embeds"]
        else:
            with torch.no_grad():
                teacher_images = _image_step(teacher, images)["image_embeds"]
                teacher_texts = _text_step(teacher, texts)["text_embeds"]
        distilled, other = (teacher_images, teacher_texts) if modality == "image" else (teacher_texts, teacher_images)
        scale = ctx.unwrapped_model.logit_scale.detach().exp()
        parts = dime_fm_loss(gather_with_local_grad(distilled.to(student.dtype)), gather_with_local_grad(student),
                             gather_with_local_grad(other.to(student.dtype)), scale, weights)
        return {key: value if key == "loss" else value.detach() for key, value in parts.items()}

    return loss


def _phase(recipe: DimeFmRecipe, student, stage: str, settings, update: str, loss, parameters):
    from ...training import Phase, Update

    return Phase(
        name=stage, steps=settings.steps,
        batch_size={"images": settings.image_batch_size, "texts": settings.text_batch_size},
        max_grad_norm=recipe.train.max_grad_norm,
        updates=[Update(
            name=update, dataset=("images", "texts"), loss=loss, parameters=parameters,
            optimizer=lambda params: build_optimizer(student, params, recipe, stage),
            scheduler=lambda optimizer, total: build_scheduler(optimizer, total, recipe, stage),
        )],
    )


def distillation_phase(recipe: DimeFmRecipe, student, teacher=None, record=None):
    """The vision stage: the student's vision tower (and projection) against the teacher's features."""
    return _phase(recipe, student, STAGE_NAME, recipe.train, "vision", make_loss(recipe, teacher, record),
                  lambda model: model.vision_parameters())


def text_distillation_phase(recipe: DimeFmRecipe, student, teacher=None, record=None):
    """The text stage: the student's distilled text tower (and projection), its vision tower frozen."""
    return _phase(recipe, student, TEXT_STAGE_NAME, recipe.text_stage, "text",
                  make_loss(recipe, teacher, record, modality="text"), lambda model: model.text_parameters())


# ---------------------------------------------------------------------------------------------------- evaluation
def _embed_images(model, pixel_values):
    from .modeling_dime_fm import _normalise, _pooled

    return _normalise(_pooled(model.get_image_features(pixel_values=pixel_values)))


def evaluation_splits(recipe: DimeFmRecipe):
    """`{zero_shot, retrieval, probe_train, probe_test}`: the world's single-object zero-shot split (the teacher's),
    held-out pairs for retrieval, and the teacher-probe splits."""
    from ...data.captions import SPLIT_NAMES
    from .features_dime_fm import _world

    world = _world()
    e = recipe.eval
    return world, {
        "zero_shot": world.single_object(e.zero_shot_samples, seed=0, split=SPLIT_NAMES["teacher"]["zero-shot"]),
        "retrieval": world.pairs(e.retrieval_pairs, seed=0, split=SPLIT_NAMES["distillation"]["test"]),
        "probe_train": world.single_object(e.probe_train, seed=0,
                                           split=SPLIT_NAMES["teacher-probes"]["probe-train"]),
        "probe_test": world.single_object(e.probe_test, seed=0, split=SPLIT_NAMES["teacher-probes"]["probe-test"]),
    }


def zero_shot_statistics(model, processor, dataset, prompts, batch_size: int = 256, accelerator=None,
                         text_model=None) -> dict:
    """Zero-shot top-1/top-5 accuracy from per-image hits summed over every process (`effhub.training.evaluate`).

    Args:
        text_model (`CLIPModel`, *optional*): embeds the prompts instead of `model` (a student's images against its
            teacher's text tower).
    """
    import torch

    from ...training import evaluate
    from ..clip_teacher.evaluation import encode_texts
    from .features_dime_fm import ImageRows, PixelCollator

    text = encode_texts(text_model if text_model is not None else model, processor.tokenizer, prompts, batch_size)
    k = min(5, len(prompts))
    labels = np.asarray(dataset["label"])

    def step(model, batch):
        top = (_embed_images(model, batch["pixel_values"]) @ text.to(batch["pixel_values"].device).T).topk(k).indices
        truth = batch["label"].to(top.device)
        return torch.stack([(top[:, 0] == truth).float(), (top == truth[:, None]).any(-1).float(),
                            torch.ones_like(truth, dtype=torch.float)], dim=1)

    rows = ImageRows(dataset, processor, extra={"label": labels})
    sums = evaluate(model, rows, step, batch_size, collate_fn=PixelCollator(processor), accelerator=accelerator)
    count = float(sums[2])
    return {"accuracy": float(sums[0]) / count, "top5_accuracy": float(sums[1]) / count, "num_samples": int(count),
            "num_classes": len(prompts), "chance": 1.0 / len(prompts)}


def pixel_tensor(processor, dataset, column: str = "image"):
    from .features_dime_fm import PixelCollator

    return PixelCollator(processor).pixel_values([image.convert("RGB") for image in dataset[column]])


def linear_probe_accuracy(model, processor, train_set, test_set, num_classes: int) -> dict:
    """Top-1 of a logistic-regression probe on the frozen pooled image features (the clip-teacher's probe)."""
    import torch

    from ..clip_teacher.probing import fit_linear_probe, pooled_image_features, standardise

    train = pooled_image_features(model, pixel_tensor(processor, train_set))
    test = pooled_image_features(model, pixel_tensor(processor, test_set))
    train, test = standardise(train, test)
    weight, bias = fit_linear_probe(train, torch.as_tensor(train_set["label"]), num_classes)
    predicted = (test @ weight + bias).argmax(dim=-1)
    accuracy = (predicted == torch.as_tensor(test_set["label"])).float().mean().item()
    return {"accuracy": accuracy, "num_train": len(train_set), "num_test": len(test_set)}


def seconds_per_image(model, pixel_values, repeats: int = 3) -> float:
    """Median wall time of the image tower (with projection) per image, batch of `len(pixel_values)`."""
    import torch

    times = []
    with torch.no_grad():
        _embed_images(model, pixel_values[:2])
        for _ in range(repeats):
            start = time.perf_counter()
            _embed_images(model, pixel_values)
            times.append((time.perf_counter() - start) / len(pixel_values))
    return float(np.median(times))


def vision_parameter_count(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters()
               if name.startswith(("vision_model.", "visual_projection.")))


def text_parameter_count(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters()
               if name.startswith(("text_model.", "text_projection.")))


def evaluate_model(model, processor, world, splits, recipe: DimeFmRecipe, accelerator=None) -> dict:
    """Zero-shot, retrieval, linear probe, vision parameters and time per image of one CLIP-style model."""
    from ..clip_teacher.evaluation import retrieval_recalls

    model.eval()
    zero_shot = zero_shot_statistics(model, processor, splits["zero_shot"], world.zero_shot_prompts(),
                                     recipe.eval.batch_size, accelerator)
    retrieval_pixels = pixel_tensor(processor, splits["retrieval"])
    retrieval = retrieval_recalls(model, processor.tokenizer, retrieval_pixels, splits["retrieval"]["caption"],
                                  batch_size=recipe.eval.batch_size)
    probe = linear_probe_accuracy(model, processor, splits["probe_train"], splits["probe_test"],
                                  len(world.class_names))
    return {"zero_shot": zero_shot, "retrieval": retrieval, "linear_probe": probe,
            "vision_parameters": vision_parameter_count(model), "text_parameters": text_parameter_count(model),
            "seconds_per_image": seconds_per_image(model, retrieval_pixels[:128])}


def evaluate_side_by_side(student, teacher, recipe: DimeFmRecipe, accelerator=None) -> dict:
    """`{"student": ..., "teacher": ..., "ratios": ...}` on the same splits; a student with a distilled text tower
    also gets `student["zero_shot_with_teacher_text"]` (its images against the teacher's prompts: what the second
    stage costs)."""
    world, splits = evaluation_splits(recipe)
    results = {"student": evaluate_model(student, teacher.processor, world, splits, recipe, accelerator),
               "teacher": evaluate_model(teacher.model, teacher.processor, world, splits, recipe, accelerator)}
    s, t = results["student"], results["teacher"]
    if getattr(student.config, "text_tower", "teacher") == "distilled":
        s["zero_shot_with_teacher_text"] = zero_shot_statistics(
            student, teacher.processor, splits["zero_shot"], world.zero_shot_prompts(), recipe.eval.batch_size,
            accelerator, text_model=teacher.model)
    results["ratios"] = {
        "vision_parameters": s["vision_parameters"] / t["vision_parameters"],
        "text_parameters": s["text_parameters"] / t["text_parameters"],
        "zero_shot_accuracy": s["zero_shot"]["accuracy"] / max(t["zero_shot"]["accuracy"], 1e-12),
        "seconds_per_image": s["seconds_per_image"] / max(t["seconds_per_image"], 1e-12),
    }
    return results


# ---------------------------------------------------------------------------------------------------- entry points
def train(recipe: DimeFmRecipe, options, record=None):
    """Distil the recipe's teacher into a student; the run folder becomes a transformers model folder.

    Args:
        recipe (`DimeFmRecipe`): the recipe; `options.extra["teacher"]` / `["features"]` (`--teacher`,
            `--features`) override its `teacher` / `features`.
        options (`effhub.training.RunOptions`): output folder, seed, resume, precision, ...
        record (`list`, *optional*): receives the image and text rows of every training batch.
    """
    import torch

    from ...recipes import recipe_to_dict
    from ...training import Run
    from ..clip_teacher.processing import save_clip_processor
    from .card_dime_fm import write_results_and_card
    from .features_dime_fm import CACHE_INFO_FILE, load_teacher

    check_recipe(recipe)
    if options.extra.get("teacher"):
        recipe.teacher = str(options.extra["teacher"])
    teacher = load_teacher(recipe.teacher)
    given = options.extra.get("features") or recipe.features
    features = resolve_features(recipe, options)
    if features is not None:
        recipe.features = str(features)
    seed = options.seed_or(recipe.seed)
    torch.manual_seed(seed)
    student = build_student(teacher, recipe)
    with Run(options, method=METHOD_NAME, seed=seed, recipe=recipe_to_dict(recipe)) as run:
        if not given and options.overwrite and features is not None and (features / CACHE_INFO_FILE).is_file():
            # the run's own cache goes with the run that --overwrite replaces (its teacher may have changed since)
            if run.is_main_process:
                shutil.rmtree(features)
            run.wait_for_everyone()
        datasets, collate, _ = training_datasets(recipe, teacher, features, run.accelerator,
                                                 build_cache=not given)
        online = teacher.model.to(run.accelerator.device) if features is None else None
        trained = run.train_stage(STAGE_NAME, student, [distillation_phase(recipe, student, online, record)],
                                  datasets, collate_fn=collate).model
        if recipe.text_stage.steps:
            datasets, collate = text_stage_datasets(recipe, teacher, features)
            trained = run.train_stage(TEXT_STAGE_NAME, trained,
                                      [text_distillation_phase(recipe, trained, online, record)], datasets,
                                      collate_fn=collate).model
        run.save_pretrained(trained)
        # every process evaluates (zero-shot hits are summed across them); the main process writes
        metrics = evaluate_side_by_side(trained, teacher, recipe, run.accelerator)
        if run.is_main_process:
            save_clip_processor(teacher.processor, run.layout.root)
            write_results_and_card(run.layout.root, recipe, metrics, trained)
        run.wait_for_everyone()
    return run.layout.root


def load_run(run_dir):
    """`(student, teacher, recipe)` of a finished run folder."""
    import json

    from ...recipes import build_dataclass
    from ...training import RUN_INFO_FILE
    from ..loading import load_pretrained
    from .features_dime_fm import load_teacher
    from .modeling_dime_fm import DimeFmModel

    run_dir = Path(run_dir)
    info_file = run_dir / RUN_INFO_FILE
    if not info_file.is_file() or not (run_dir / "config.json").is_file():
        raise CheckpointError(f"'{run_dir}' is not a dime-fm run folder (no {RUN_INFO_FILE} or config.json)",
                              "pass the --output-dir of `effhub train dime-fm`")
    recipe = build_dataclass(DimeFmRecipe, json.loads(info_file.read_text())["recipe"])
    student = load_pretrained(DimeFmModel, run_dir).eval()
    return student, load_teacher(recipe.teacher), recipe


def evaluate_run(run_dir, options=None) -> dict:
    """`effhub eval <run> [--zero-shot]`: the student and its teacher side by side, measured again."""
    student, teacher, recipe = load_run(run_dir)
    return {"split": "test", **evaluate_side_by_side(student, teacher, recipe)}


__all__ = [
    "METHOD_NAME",
    "check_recipe",
    "build_student",
    "build_optimizer",
    "learning_rate_at",
    "parameter_groups",
    "training_datasets",
    "make_loss",
    "distillation_phase",
    "text_distillation_phase",
    "text_stage_datasets",
    "evaluate_model",
    "evaluate_side_by_side",
    "train",
    "load_run",
    "evaluate_run",
]
