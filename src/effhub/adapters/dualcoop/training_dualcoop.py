"""Training and evaluation of DualCoOp adapters (Sun, Hu and Saenko, NeurIPS 2022, arXiv:2206.09541) on effhub's
run layer.

A run: build the data (the caption world's multi-label images, or VOC2007 / COCO-2014 from `--data-dir`) → draw
(or load) the partial-label mask of the label ratio and save it in the run folder → wrap the frozen CLIP with
`get_peft_model(clip, DualCoOpConfig(...))` → one stage, one phase, one update: SGD over the contexts only, with the
asymmetric loss on the dual logits (unknown labels ignored), in the zero-shot setting a random subset of the seen
classes per batch → evaluate mAP and precision/recall/F1 (top-k and threshold; ZSL and GZSL in the zero-shot setting)
→ save the adapter (`adapter_config.json` + `adapter_model.safetensors`), `eval_results.json` and the card.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import CheckpointError, ConfigError, DatasetError
from .recipe_dualcoop import DualCoOpRecipe

METHOD_NAME = "dualcoop"
STAGE_NAME = "prompts"
MASK_FOLDER = "partial_labels"


# ------------------------------------------------------------------------------------------------- data
@dataclass
class MultiLabelData:
    """The data of a run: class lists, training images and (partial) targets, test images and full targets.

    Attributes:
        class_names: every class of the test set, in label-column order.
        train_classes: the classes the adapter is trained on (all, or the seen ones in the zero-shot setting).
        unseen_classes: held-out classes (zero-shot setting), else empty.
        train_images / test_images: `[N, H, W, 3]` uint8 arrays or lists of image paths.
        train_targets: `[N, len(train_classes)]` with 1, 0 or -1 (unknown); test_targets: `[N, len(class_names)]`.
    """

    class_names: list
    train_classes: list
    unseen_classes: list
    train_images: object
    train_targets: np.ndarray
    test_images: object
    test_targets: np.ndarray


class MultiLabelImages:
    """A map-style dataset of images (uint8 arrays or paths, resized to `image_size`) and their target rows."""

    def __init__(self, images, targets: np.ndarray, image_size: int):
        if len(images) != len(targets):
            raise DatasetError(f"{len(images)} images for {len(targets)} label rows", "pass one label row per image")
        self.images, self.targets, self.image_size = images, np.asarray(targets, dtype=np.int64), int(image_size)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        image = self.images[index]
        if isinstance(image, np.ndarray) and image.shape[:2] == (self.image_size, self.image_size):
            pixels = image
        else:
            image = Image.fromarray(image) if isinstance(image, np.ndarray) else Image.open(image)
            # resized to a square, aspect not kept (as the multi-label literature does)
            pixels = np.asarray(image.convert("RGB").resize((self.image_size, self.image_size), Image.BICUBIC))
        return {"pixels": pixels, "labels": self.targets[index], "index": index}


def collate(items: list[dict]) -> dict:
    """Stack items into CLIP-normalised `pixel_values` and `labels`."""
    import torch

    from ...models.clip_teacher.processing import pixel_values_from_uint8

    return {"pixel_values": pixel_values_from_uint8(np.stack([item["pixels"] for item in items])),
            "labels": torch.as_tensor(np.stack([item["labels"] for item in items]))}


def _world_data(recipe: DualCoOpRecipe):
    from ...data.captions import SPLIT_NAMES, CaptionWorld, CaptionWorldConfig, default_cache_dir
    from ...data.captions.world import CAPTION_WORLD_VERSIONS
    from ...data.multilabel import multi_hot
    from ...models.clip_teacher.evaluation import images_to_uint8

    data = recipe.data
    if data.world_version not in CAPTION_WORLD_VERSIONS:
        raise ConfigError(f"data.world_version is {data.world_version}", f"use one of {list(CAPTION_WORLD_VERSIONS)}")
    world = CaptionWorld(CaptionWorldConfig.for_version(data.world_version), cache_dir=default_cache_dir())
    names = SPLIT_NAMES["prompt-learning"]
    zero_shot = data.setting == "zero-shot"
    train = world.multilabel(data.train_size, seed=data.world_seed, classes="seen" if zero_shot else "all",
                             split=names["train"])
    test = world.multilabel(data.test_size, seed=data.world_seed, classes="all", split=names["test"])
    all_classes = list(world.class_names)
    train_targets = multi_hot(train["labels"], len(all_classes))
    test_targets = multi_hot(test["labels"], len(all_classes))
    train_classes = list(world.seen_classes) if zero_shot else all_classes
    columns = [all_classes.index(name) for name in train_classes]
    return (all_classes, train_classes, list(world.unseen_classes) if zero_shot else [],
            images_to_uint8(train["image"]), train_targets[:, columns], images_to_uint8(test["image"]), test_targets)


def _real_data(recipe: DualCoOpRecipe, data_dir):
    from ...data.multilabel import COCO_CLASSES, VOC2007_CLASSES, load_coco2014, load_voc2007, multi_hot
    from ...data.multilabel.coco2014 import load_coco_zero_shot_split

    data = recipe.data
    if data_dir is None:
        raise DatasetError(f"data.dataset={data.dataset} reads a real data set but no folder was given",
                           "pass --data-dir (the VOC2007 folder, or the COCO root holding annotations/)")

    def paths(dataset):
        return [image["path"] for image in dataset.cast_column("image", _path_feature())["image"]]

    if data.dataset == "voc2007":
        if data.setting == "zero-shot":
            raise ConfigError("VOC2007 has no zero-shot split", "use data.setting=partial, or coco2014")
        train, test, classes = load_voc2007(data_dir, "trainval"), load_voc2007(data_dir, "test"), VOC2007_CLASSES
        train_classes, unseen = list(classes), []
        train_targets = multi_hot(train["labels"], len(classes))
    elif data.setting == "partial":
        train, test, classes = load_coco2014(data_dir, "train2014"), load_coco2014(data_dir, "val2014"), COCO_CLASSES
        train_classes, unseen = list(classes), []
        train_targets = multi_hot(train["labels"], len(classes))
    else:
        train, seen = load_coco_zero_shot_split(data_dir, "seen")
        test, everything = load_coco_zero_shot_split(data_dir, "gzsl")
        classes = [COCO_CLASSES[i] for i in everything]
        train_classes = [COCO_CLASSES[i] for i in seen]
        unseen = [name for name in classes if name not in train_classes]
        full = multi_hot(train["labels"], len(COCO_CLASSES))
        train_targets = full[:, list(seen)]
        test_targets = multi_hot(test["labels"], len(COCO_CLASSES))[:, list(everything)]
        return list(classes), train_classes, unseen, paths(train), train_targets, paths(test), test_targets
    return (list(classes), train_classes, unseen, paths(train), train_targets, paths(test),
            multi_hot(test["labels"], len(classes)))


def _path_feature():
    import datasets

    return datasets.Image(decode=False)


def build_data(recipe: DualCoOpRecipe, data_dir=None, mask_dir=None, label_ratio: float | None = None):
    """The run's `MultiLabelData`; training targets carry the partial-label mask of the label ratio (drawn from
    `data.mask_seed` and saved under `mask_dir`, or read from `data.mask_file`)."""
    from ...data.multilabel.partial import (
        load_partial_label_mask,
        mask_file_name,
        partial_label_mask,
        partial_targets,
        save_partial_label_mask,
    )

    ratio = recipe.data.label_ratio if label_ratio is None else label_ratio
    if recipe.data.dataset == "caption-world":
        parts = _world_data(recipe)
    else:
        parts = _real_data(recipe, data_dir)
    class_names, train_classes, unseen, train_images, train_targets, test_images, test_targets = parts
    if recipe.data.mask_file:
        mask, ratio = load_partial_label_mask(recipe.data.mask_file, train_targets.shape)
    else:
        mask = partial_label_mask(*train_targets.shape, ratio, recipe.data.mask_seed)
        if mask_dir is not None:
            save_partial_label_mask(Path(mask_dir) / mask_file_name(ratio), mask, ratio, recipe.data.mask_seed)
    return MultiLabelData(class_names, train_classes, unseen, train_images, partial_targets(train_targets, mask),
                          test_images, test_targets), ratio


# ------------------------------------------------------------------------------------------------- model
def load_base_clip(reference: str):
    """The frozen base `CLIPModel` of a recipe (`"effhub-shipped:<name>"`, a folder or a Hub repo id)."""
    from transformers import CLIPModel

    from ...models.loading import load_pretrained
    from .model import resolve_reference

    return load_pretrained(CLIPModel, resolve_reference(reference)).eval()


def build_adapter(recipe: DualCoOpRecipe, clip, class_names, ratio: float):
    """`get_peft_model(clip, DualCoOpConfig(...))` from the recipe, for the training classes."""
    from peft import get_peft_model

    from .config import DualCoOpConfig
    from .model import portable_reference

    m = recipe.model
    config = DualCoOpConfig(
        class_names=list(class_names), n_ctx=m.n_ctx, n_ctx_neg=m.n_ctx_neg, class_specific=m.class_specific,
        ctx_init_pos=m.ctx_init_pos, ctx_init_neg=m.ctx_init_neg, tokenizer=portable_reference(m.base_model),
        dense_mode=m.dense_mode, negative_prompt=m.negative_prompt,
        logit_offset=0.0 if isinstance(m.logit_offset, str) else m.logit_offset,
        scale_source=m.scale_source, image_size=recipe.data.train_image_size,
        loss_weight=recipe.loss_weight_for(ratio))
    model = get_peft_model(clip, config)
    model.peft_config["default"].base_model_name_or_path = portable_reference(m.base_model)
    if isinstance(m.logit_offset, str) and m.logit_offset != "prior":
        raise ConfigError(f"model.logit_offset={m.logit_offset!r}", "pass a number or 'prior'")
    return model


def set_prior_offset(model, train_set, max_images: int = 256) -> float:
    """`model.logit_offset: prior`: the offset that starts the mean presence logit of the (untrained) adapter on the
    first training images at the log-odds of their known labels' positive rate (`dual_logit_offset`)."""
    import torch

    from .layer import dual_logit_offset

    batch = collate([train_set[i] for i in range(min(len(train_set), max_images))])
    config = model.peft_config["default"]
    config.logit_offset = 0.0
    with torch.no_grad():
        logits = model(pixel_values=batch["pixel_values"]).logits
    config.logit_offset = dual_logit_offset(logits, batch["labels"])
    return config.logit_offset


def _loss(recipe: DualCoOpRecipe, class_names):
    import torch

    subset = recipe.data.num_train_classes

    def loss(model, batch, ctx):
        labels = batch["labels"]
        names = None
        if subset is not None and subset < len(class_names):
            generator = torch.Generator().manual_seed(recipe.seed * 1_000_003 + ctx.global_step)
            columns = torch.randperm(len(class_names), generator=generator)[:subset].sort().values
            names = [class_names[i] for i in columns.tolist()]
            labels = labels[:, columns.to(labels.device)]
        output = model(pixel_values=batch["pixel_values"], class_names=names, labels=labels)
        return {"loss": output.loss, "known_labels": (labels >= 0).float().mean().detach()}

    return loss


def _scheduler(optimizer, total_steps: int, recipe: DualCoOpRecipe):
    import torch

    warmup, base, warm_lr = recipe.train.warmup_steps, recipe.train.learning_rate, recipe.train.warmup_lr

    def factor(step: int) -> float:
        if step < warmup:
            return warm_lr / base
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_phase(recipe: DualCoOpRecipe, class_names):
    """The single phase: SGD (momentum, weight decay) over the contexts, warm-up then cosine decay."""
    import torch

    from ...training import Phase, Update

    t = recipe.train
    return Phase(name="contexts", steps=t.steps, batch_size=t.batch_size, updates=[Update(
        name="dualcoop", dataset="train", loss=_loss(recipe, class_names),
        parameters=lambda model: [p for p in model.parameters() if p.requires_grad],
        optimizer=lambda params: torch.optim.SGD(list(params), lr=t.learning_rate, momentum=t.momentum,
                                                 weight_decay=t.weight_decay),
        scheduler=lambda optimizer, total: _scheduler(optimizer, total, recipe))])


# ------------------------------------------------------------------------------------------------- evaluation
def scores_and_targets(model, images, targets, class_names, image_size: int, batch_size: int, run=None,
                       accelerator=None):
    """Presence log-odds `[N, C]` of `class_names` (`DualCoOpOutput.presence_logits`) and the targets, gathered from
    every process."""
    import torch

    from ...training import evaluate

    dataset = MultiLabelImages(images, targets, image_size)
    names = list(class_names)

    def step(model, batch):
        return {"scores": model(pixel_values=batch["pixel_values"], class_names=names).presence_logits.float(),
                "labels": batch["labels"]}

    if run is not None:
        result = run.evaluate(model, dataset, step, batch_size, collate_fn=collate, reduce=None)
    else:
        result = evaluate(model, dataset, step, batch_size, collate_fn=collate, accelerator=accelerator,
                          reduce=None)
    return result["scores"].to(torch.float32).cpu(), result["labels"].cpu()


def multilabel_metrics(scores, targets, top_k: int = 3, threshold: float = 0.5) -> dict:
    """mAP (percent), CP/CR/CF1/OP/OR/OF1 at the probability threshold and at top-k (percent), from
    `effhub.metrics`, for presence log-odds `scores` `[N, C]` (`scores_and_targets`).

    `map` is exact: the evaluation gathers every image's scores, so each is ranked, by its log-odds (the float32
    probabilities of confident classes tie just below 1). The histogram estimate of `effhub.metrics` stays as
    `map_histogram` with its `map_error_bound`: with the image-level threshold the probabilities of an image's top
    classes crowd into the last bins near 1, and the bound grows past use.
    """
    import numpy as np

    from ...metrics import multilabel_scores, multilabel_statistics
    from ...models.clip_teacher.probing import average_precisions

    top_k = min(top_k, scores.shape[1])
    statistics = multilabel_statistics(scores, targets, top_k=top_k, threshold=threshold, from_logits=True)
    result = {key: 100 * value for key, value in multilabel_scores(statistics, top_k).items()
              if isinstance(value, float)}
    result["map_histogram"] = result["map"]
    result["map"] = float(np.nanmean(average_precisions(np.asarray(scores), np.asarray(targets))) * 100)
    result["num_images"], result["num_classes"], result["top_k"] = int(len(scores)), int(scores.shape[1]), top_k
    return result


def evaluate_adapter(model, data: MultiLabelData, recipe: DualCoOpRecipe, run=None, accelerator=None) -> dict:
    """The test metrics: `{"test": ...}` in the partial setting; `{"zsl": ..., "gzsl": ...}` in the zero-shot one
    (ZSL: the unseen classes on the test images holding at least one; GZSL: every class on every test image)."""
    t = recipe.train
    scores, targets = scores_and_targets(model, data.test_images, data.test_targets, data.class_names,
                                         recipe.data.eval_image_size, t.eval_batch_size, run, accelerator)
    if not data.unseen_classes:
        return {"test": multilabel_metrics(scores, targets, t.top_k, t.threshold)}
    columns = [data.class_names.index(name) for name in data.unseen_classes]
    rows = (targets[:, columns] == 1).any(dim=1)
    # ZSL scores the unseen classes alone: with a negative prompt each class's (negative, positive) pair does not
    # depend on the other classes, and the unseen columns of the GZSL scores are those scores; with the image-level
    # threshold the other classes set the threshold, so the unseen classes are scored again among themselves
    if recipe.model.negative_prompt == "image_threshold":
        zsl_scores, _ = scores_and_targets(model, data.test_images, data.test_targets, data.unseen_classes,
                                           recipe.data.eval_image_size, t.eval_batch_size, run, accelerator)
    else:
        zsl_scores = scores[:, columns]
    return {"gzsl": multilabel_metrics(scores, targets, t.top_k, t.threshold),
            "zsl": multilabel_metrics(zsl_scores[rows], targets[rows][:, columns], t.top_k, t.threshold)}


# ------------------------------------------------------------------------------------------------- entry points
def train(recipe: DualCoOpRecipe, options):
    """`effhub train dualcoop`: train a DualCoOp adapter; the run folder becomes a PEFT adapter folder with the
    evaluation, the partial-label mask and the card.

    Args:
        recipe (`DualCoOpRecipe`): the recipe.
        options (`effhub.training.RunOptions`): output folder, seed, ...; `options.extra["label_ratio"]`
            (`--label-ratio`) overrides `data.label_ratio`.
    """
    import dataclasses

    import torch

    from ...recipes import recipe_to_dict
    from ...training import Run
    from .card_dualcoop import write_dualcoop_card

    ratio = options.extra.get("label_ratio")
    if ratio is not None:
        try:
            ratio = float(ratio)
        except (TypeError, ValueError):
            raise ConfigError(f"--label-ratio {ratio!r} is not a number", "pass a fraction such as 0.1") from None
        recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, label_ratio=ratio))
        recipe.__post_init__()
    seed = options.seed_or(recipe.seed)
    with Run(options, method=METHOD_NAME, seed=seed, recipe=recipe_to_dict(recipe)) as run:
        data, ratio = build_data(recipe, options.data_dir,
                                 run.layout.root / MASK_FOLDER if run.is_main_process else None)
        torch.manual_seed(seed)
        clip = load_base_clip(recipe.model.base_model)
        model = build_adapter(recipe, clip, data.train_classes, ratio)
        train_set = MultiLabelImages(data.train_images, data.train_targets, recipe.data.train_image_size)
        if recipe.model.logit_offset == "prior":
            set_prior_offset(model, train_set)
        result = run.train_stage(STAGE_NAME, model, [build_phase(recipe, data.train_classes)], {"train": train_set},
                                 collate_fn=collate,
                                 outputs=lambda trained: evaluate_adapter(trained, data, recipe, run=run))
        run.save_pretrained(result.model, save_embedding_layers=False)
        if run.is_main_process:
            write_dualcoop_card(run.layout.root, result.model, recipe, result.outputs, ratio, data)
        run.wait_for_everyone()
    return run.layout.root


def evaluate_run(run_dir, options=None) -> dict:
    """`effhub eval <run>`: reload the base CLIP and the adapter folder with PEFT and measure them again."""
    from peft import PeftModel

    from ...recipes import build_dataclass
    from ...training import RUN_INFO_FILE

    run_dir = Path(run_dir)
    info_file = run_dir / RUN_INFO_FILE
    if not info_file.is_file() or not (run_dir / "adapter_config.json").is_file():
        raise CheckpointError(f"'{run_dir}' is not a dualcoop run folder (no {RUN_INFO_FILE} or adapter_config.json)",
                              "pass the --output-dir of `effhub train dualcoop`")
    recipe = build_dataclass(DualCoOpRecipe, json.loads(info_file.read_text())["recipe"])
    data, _ = build_data(recipe, getattr(options, "data_dir", None))
    model = PeftModel.from_pretrained(load_base_clip(recipe.model.base_model), str(run_dir)).eval()
    return {"split": "test", **evaluate_adapter(model, data, recipe)}


__all__ = ["MultiLabelData", "MultiLabelImages", "collate", "build_data", "load_base_clip", "build_adapter",
           "build_phase", "scores_and_targets", "multilabel_metrics", "evaluate_adapter", "train", "evaluate_run"]
