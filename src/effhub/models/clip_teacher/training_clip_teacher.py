"""The `clip-teacher` recipe: train a plain `transformers.CLIPModel` contrastively on the generated caption world.

Steps of a run: generate (or load from the cache) the caption world's splits → train a CLIP-format BPE tokenizer on
the world's text → build the `CLIPConfig` (ids and position count from the tokenizer) and the processor → train
with the symmetric InfoNCE loss of CLIP (Radford et al., ICML 2021), optionally with shape-swapped captions as extra
hard negatives of each image (as NegCLIP, Yuksekgonul et al., ICLR 2023, adds attribute-swapped captions), under
`effhub.training.PhasedTrainer` →
measure zero-shot accuracy and retrieval recall → save model, processor, `eval_results.json` and the card into the
run folder, which is a standard transformers model folder.

Under several processes each rank computes the contrastive loss over its own batch (negatives are not gathered
across ranks), the usual simplification of small-scale CLIP training; gradients are averaged by DDP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ...citations import bibtex
from ...errors import ConfigError

METHOD_NAME = "clip-teacher"
MODEL_NAME = "effhub-clip-teacher"
DATASET_TYPE = "effhub/caption-world"
DATASET_NAME = "effhub caption world"
PRETRAIN_LOSSES = ("colour-shape", "classes")
VISION_POOLINGS = ("class-token", "mean")
# CLIP clamps its learned temperature so that logits are scaled by at most 100
MAX_LOGIT_SCALE = math.log(100.0)


@dataclass
class ClipWorldRecipe:
    """Which caption-world data a run uses (the world's own parameters are frozen under `version`)."""

    version: int = 2
    seed: int = 0
    train_pairs: int = 12000
    test_pairs: int = 1000
    zero_shot_samples: int = 640
    tokenizer_texts: int = 4000
    cache: bool = True


@dataclass
class ClipTokenizerRecipe:
    """BPE tokenizer size and the text positions.

    Args:
        learned_contexts (`int`): DualCoOp contexts a class prompt must have room for (trained positions).
        min_trained_fraction (`float`): every text position is reached by at least this fraction of the training
            captions (longer captions are truncated).
    """

    vocab_size: int = 1024
    min_frequency: int = 2
    learned_contexts: int = 16
    min_trained_fraction: float = 0.01


@dataclass
class ClipModelRecipe:
    """Sizes of the two towers."""

    patch_size: int = 8
    projection_dim: int = 96
    text_hidden_size: int = 96
    text_layers: int = 2
    text_heads: int = 4
    vision_hidden_size: int = 96
    vision_layers: int = 3
    vision_heads: int = 4
    # "sincos": start the vision tower's learned position table from 2-D sine-cosine codes (still learned);
    # "random": transformers' default initialisation
    vision_position_init: str = "random"
    # "class-token": CLIP's pooling, as initialised by transformers; "mean": the last vision layer's query projection
    # fixed at zero, so that the pooled class token collects the mean of all tokens' values (`fix_mean_pooling`)
    vision_pooling: str = "class-token"


@dataclass
class ClipPretrainRecipe:
    """The optional first stage: the vision tower trained as a classifier of single-object images (LiT's start),
    then, optionally, to name every object of single- and multi-object images from its pooled and patch tokens.

    Args:
        steps (`int`): optimiser steps; 0 skips the stage (the whole model is then trained contrastively, as CLIP).
        single_object_images (`int`): single-object training images, classes balanced (horizontally flipped copies
            are added: twice as many samples).
        loss (`str`): `"colour-shape"` (a colour head and a shape head, a cross-entropy each) or `"classes"` (one
            cross-entropy over the colour-shape classes); see `vision_pretraining.class_loss`.
        object_steps (`int`): steps of the stage's second phase, `objects` (0: none): the single-object images and
            `multi_object_images` more, every object named from the patch tokens it covers (a lone object also from
            the pooled output) through the same head (`vision_pretraining.objects_loss`).
        multi_object_images (`int`): multi-object training images (1 to the world's `max_objects` objects) of the
            `objects` phase, with their mirror images.
        object_learning_rate (`float`): peak learning rate of the `objects` phase (its own warm-up and cosine decay).
        presence_weight (`float`): weight of the `objects` phase's multi-label term (0: none): a head with one output
            per colour-shape class on the pooled output, trained to say which classes an image holds (binary
            cross-entropy summed over the classes, `vision_pretraining.presence_loss`). Without it the pooled output
            of a crowded scene says which colours and which shapes are there, not which colour goes with which shape.
        presence_regions (`bool`): with `presence_weight`, also name every object through the presence head from
            the patches it covers (`vision_pretraining.region_presence_loss`), so that the patch tokens speak the
            code the pooled output learns (dense features aligned with the text).
    """

    steps: int = 0
    batch_size: int = 96
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    max_grad_norm: float = 1.0
    single_object_images: int = 12000
    loss: str = "colour-shape"
    object_steps: int = 0
    multi_object_images: int = 0
    object_learning_rate: float = 5e-4
    presence_weight: float = 0.0
    presence_regions: bool = False


@dataclass
class ClipTrainRecipe:
    """Optimisation of the single contrastive phase."""

    steps: int = 400
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 30
    max_grad_norm: float = 1.0
    # the learned temperature's own learning rate (None: the model's); CLIP's log-scale moves slowly at small lr
    temperature_learning_rate: float | None = None
    # add one shape-swapped caption per image as an extra negative of the image-to-text softmax: captions name
    # colours, sizes and positions too, and without such negatives a batch can be matched without seeing shapes
    shape_negatives: bool = False
    # LiT: the vision tower (all but its projection into the joint space) is frozen in the contrastive stage
    lock_image_tower: bool = False
    # after training, remove the direction every class prompt shares from the text tower (`calibration`): per-class
    # cosine scores (dense localisation, zero-shot multi-label) then stop rewarding what all prompts have in common
    center_class_prompts: bool = False
    # the image projection into the joint space: "learned" (CLIP's) or "whitened", fixed before the contrastive stage
    # at the whitening of the vision tower's pooled features on the first `whitening_images` training images and not
    # trained (`calibration.whiten_visual_projection`): the learned one shrinks directions that carry which classes a
    # scene holds, which prompt-based classifiers then cannot read
    visual_projection: str = "learned"
    whitening_images: int = 5000


VISUAL_PROJECTIONS = ("learned", "whitened")


@dataclass
class ClipTaggingRecipe:
    """The optional last stage, `tagging` (`tagging.py`): class prompts scored against every patch of a scene learn
    which classes it holds (a binary cross-entropy per class, weighted by `weight`) while CLIP's loss on the
    captions goes on; the vision tower stays locked, the text tower, both projections and the temperature learn.

    Args:
        steps (`int`): optimiser steps; 0 (default) skips the stage.
        weight (`float`): weight of the tagging loss beside CLIP's loss (weight 1).
        start_from (`str`, *optional*): a teacher to start the stage from, a shipped teacher's name (`base`) or a
            model folder: its weights and tokenizer are used and the run's earlier stages (vision pre-training, the
            contrastive stage, prompt centring) are not run. Default: the run's own earlier stages.
    """

    steps: int = 0
    batch_size: int = 96
    learning_rate: float = 5e-4
    weight_decay: float = 0.1
    warmup_steps: int = 50
    max_grad_norm: float = 1.0
    weight: float = 1.0
    start_from: str | None = None


@dataclass
class ClipEvalRecipe:
    """Evaluation batch size."""

    batch_size: int = 256


@dataclass
class CLIPTeacherRecipe:
    """A recipe of the `clip-teacher` method (`effhub/models/clip_teacher/recipes/<name>.yaml`)."""

    description: str = ""
    seed: int = 0
    world: ClipWorldRecipe = field(default_factory=ClipWorldRecipe)
    tokenizer: ClipTokenizerRecipe = field(default_factory=ClipTokenizerRecipe)
    model: ClipModelRecipe = field(default_factory=ClipModelRecipe)
    pretrain: ClipPretrainRecipe = field(default_factory=ClipPretrainRecipe)
    train: ClipTrainRecipe = field(default_factory=ClipTrainRecipe)
    tagging: ClipTaggingRecipe = field(default_factory=ClipTaggingRecipe)
    eval: ClipEvalRecipe = field(default_factory=ClipEvalRecipe)


# ---------------------------------------------------------------------------------------------------- data
def build_world(recipe: CLIPTeacherRecipe):
    """The caption world of the recipe (refusing a recipe written for another world version)."""
    from ...data.captions import CAPTION_WORLD_VERSION, CaptionWorld, CaptionWorldConfig, default_cache_dir
    from ...data.captions.world import CAPTION_WORLD_VERSIONS

    if recipe.world.version not in CAPTION_WORLD_VERSIONS:
        raise ConfigError(
            f"recipe asks for caption world version {recipe.world.version}, this effhub generates versions "
            f"{list(CAPTION_WORLD_VERSIONS)}",
            f"set world.version={CAPTION_WORLD_VERSION} (figures measured on another version are not comparable)",
        )
    config = CaptionWorldConfig.for_version(recipe.world.version)
    return CaptionWorld(config, cache_dir=default_cache_dir() if recipe.world.cache else None)


def build_eval_splits(world, recipe: CLIPTeacherRecipe):
    """(single-object zero-shot split, held-out retrieval pairs); separately seeded from the training pairs."""
    from ...data.captions import SPLIT_NAMES

    names = SPLIT_NAMES["teacher"]
    zero_shot = world.single_object(recipe.world.zero_shot_samples, seed=recipe.world.seed, split=names["zero-shot"])
    retrieval = world.pairs(recipe.world.test_pairs, seed=recipe.world.seed, split=names["test"])
    return zero_shot, retrieval


class ClipPairs:
    """Training pairs held in memory as uint8 pixels and caption strings (a map-style dataset).

    Args:
        labels (`np.ndarray`, *optional*): `[N, C]` multi-hot classes of each scene, for the tagging stage.
    """

    def __init__(self, pixels: np.ndarray, captions: list[str], labels: np.ndarray | None = None):
        self.pixels = pixels
        self.captions = list(captions)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict:
        item = {"pixels": self.pixels[index], "caption": self.captions[index], "index": index}
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item


class ClipCollator:
    """Batches `ClipPairs` items: CLIP pixel normalisation and tokenisation (padding to the longest, truncation).

    Args:
        tokenizer: the CLIP tokenizer.
        negatives (`Callable`, *optional*): `negatives(caption, rng)` returns a hard-negative caption (e.g.
            `CaptionWorld.shape_swapped`); then the batch's texts are the B captions followed by their B negatives.
            Each item's negative is drawn from a generator seeded by `(seed, item index)` (deterministic on resume).
        seed (`int`): seed of the negatives and of the tag prompts.
        tag_classes (`Sequence[str]`, *optional*): the class names of the tagging stage: the batch then holds one
            prompt per class (`tagging.tag_prompts`, drawn from `(seed, first item's index)`), `tag_input_ids`,
            `tag_attention_mask`, and the items' multi-hot `tag_labels`.
    """

    def __init__(self, tokenizer, negatives=None, seed: int = 0, tag_classes: Sequence[str] | None = None):
        self.tokenizer = tokenizer
        self.negatives = negatives
        self.seed = seed
        self.tag_classes = list(tag_classes) if tag_classes is not None else None

    def __call__(self, items: list[dict]) -> dict:
        import torch

        from .processing import pixel_values_from_uint8

        texts = [item["caption"] for item in items]
        if self.negatives is not None:
            texts += [self.negatives(item["caption"], np.random.default_rng([self.seed, item.get("index", 0)]))
                      for item in items]
        text = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        batch = {
            "pixel_values": pixel_values_from_uint8(np.stack([item["pixels"] for item in items])),
            "input_ids": text["input_ids"],
            "attention_mask": text["attention_mask"],
        }
        if self.tag_classes is not None:
            from .tagging import tag_prompts

            rng = np.random.default_rng([self.seed, 1, items[0].get("index", 0)])
            tags = self.tokenizer(tag_prompts(self.tag_classes, rng), padding=True, truncation=True,
                                  return_tensors="pt")
            batch["tag_input_ids"], batch["tag_attention_mask"] = tags["input_ids"], tags["attention_mask"]
            batch["tag_labels"] = torch.from_numpy(np.stack([item["labels"] for item in items]))
        return batch


def build_tokenizer(world, recipe: CLIPTeacherRecipe, captions=None):
    """Train the CLIP tokenizer on the world's text and size its `model_max_length` (the text positions).

    Args:
        captions (`Sequence[str]`, *optional*): the training captions; the positions are those that at least
            `tokenizer.min_trained_fraction` of them reach, and never fewer than a DualCoOp prompt with
            `tokenizer.learned_contexts` contexts needs (`ConfigError` when the captions are too short for it).
            Default: the tokenizer's training text.
    """
    from .configuration_clip_teacher import required_positions
    from .tokenization import train_clip_tokenizer

    texts = world.vocabulary_texts(recipe.world.tokenizer_texts, seed=recipe.world.seed)
    tokenizer = train_clip_tokenizer(texts, recipe.tokenizer.vocab_size, recipe.tokenizer.min_frequency)
    captions = list(texts if captions is None else captions)
    min_texts = max(1, math.ceil(recipe.tokenizer.min_trained_fraction * len(captions)))
    tokenizer.model_max_length = required_positions(tokenizer, captions, world.class_names,
                                                    recipe.tokenizer.learned_contexts, min_texts)
    return tokenizer


def build_model(tokenizer, image_size: int, recipe: CLIPTeacherRecipe):
    """A freshly initialised `CLIPModel` matching `tokenizer` and the recipe's sizes."""
    check_recipe(recipe)
    from transformers import CLIPModel

    from .configuration_clip_teacher import build_clip_teacher_config

    m = recipe.model
    config = build_clip_teacher_config(
        tokenizer, max_position_embeddings=tokenizer.model_max_length, image_size=image_size,
        patch_size=m.patch_size, projection_dim=m.projection_dim, text_hidden_size=m.text_hidden_size,
        text_layers=m.text_layers, text_heads=m.text_heads, vision_hidden_size=m.vision_hidden_size,
        vision_layers=m.vision_layers, vision_heads=m.vision_heads,
    )
    model = CLIPModel(config)
    if m.vision_position_init == "sincos":
        init_sincos_positions(model)
    elif m.vision_position_init != "random":
        raise ConfigError(f"model.vision_position_init is {m.vision_position_init!r}", "use 'random' or 'sincos'")
    if m.vision_pooling == "mean":
        from .vision_pretraining import fix_mean_pooling

        fix_mean_pooling(model)
    return model


def check_recipe(recipe: CLIPTeacherRecipe) -> None:
    """Refuse recipe values that would only fail (or silently do nothing) later in the run."""
    if recipe.model.vision_pooling not in VISION_POOLINGS:
        raise ConfigError(f"model.vision_pooling is {recipe.model.vision_pooling!r}",
                          f"use one of {', '.join(VISION_POOLINGS)}")
    if recipe.pretrain.loss not in PRETRAIN_LOSSES:
        raise ConfigError(f"pretrain.loss is {recipe.pretrain.loss!r}", f"use one of {', '.join(PRETRAIN_LOSSES)}")
    if recipe.train.lock_image_tower and not recipe.pretrain.steps:
        raise ConfigError("train.lock_image_tower is true but pretrain.steps is 0: the locked tower would stay random",
                          "set pretrain.steps > 0, or lock_image_tower: false")
    if recipe.pretrain.object_steps and not recipe.pretrain.steps:
        raise ConfigError("pretrain.object_steps is set but pretrain.steps is 0: the objects phase continues the "
                          "single-object one", "set pretrain.steps > 0, or object_steps: 0")
    if recipe.pretrain.presence_weight < 0:
        raise ConfigError(f"pretrain.presence_weight is {recipe.pretrain.presence_weight}", "use 0 (none) or more")
    if recipe.pretrain.presence_regions and not recipe.pretrain.presence_weight:
        raise ConfigError("pretrain.presence_regions is true but pretrain.presence_weight is 0: the regions are named "
                          "through the presence head", "set pretrain.presence_weight > 0, or presence_regions: false")
    if recipe.train.visual_projection not in VISUAL_PROJECTIONS:
        raise ConfigError(f"train.visual_projection is {recipe.train.visual_projection!r}",
                          f"use one of {', '.join(VISUAL_PROJECTIONS)}")
    if recipe.train.visual_projection == "whitened":
        if recipe.model.projection_dim != recipe.model.vision_hidden_size:
            raise ConfigError(f"train.visual_projection is 'whitened' but model.projection_dim "
                              f"({recipe.model.projection_dim}) differs from model.vision_hidden_size "
                              f"({recipe.model.vision_hidden_size}): a whitening is square",
                              "set model.projection_dim to model.vision_hidden_size, or visual_projection: learned")
        if not recipe.pretrain.steps:
            raise ConfigError("train.visual_projection is 'whitened' but pretrain.steps is 0: it would whiten a random "
                              "tower's features", "set pretrain.steps > 0, or visual_projection: learned")
        if recipe.train.whitening_images > recipe.world.train_pairs:
            raise ConfigError(f"train.whitening_images ({recipe.train.whitening_images}) exceeds world.train_pairs "
                              f"({recipe.world.train_pairs})", "use at most world.train_pairs images")
    if recipe.pretrain.presence_weight and not recipe.pretrain.object_steps:
        raise ConfigError("pretrain.presence_weight is set but pretrain.object_steps is 0: the multi-label term is "
                          "part of the objects phase", "set pretrain.object_steps > 0, or presence_weight: 0")
    if recipe.tagging.steps < 0 or recipe.tagging.weight < 0:
        raise ConfigError(f"tagging.steps is {recipe.tagging.steps} and tagging.weight {recipe.tagging.weight}",
                          "use 0 or more for both (steps 0: no tagging stage)")
    if recipe.tagging.start_from and not recipe.tagging.steps:
        raise ConfigError(f"tagging.start_from is {recipe.tagging.start_from!r} but tagging.steps is 0: the run "
                          "would only copy that teacher", "set tagging.steps > 0, or leave start_from unset")


def trainable_parameters(model, recipe: CLIPTeacherRecipe, prefixes: Sequence[str] = ()) -> list:
    """The parameters of `model` (a `CLIPModel` or the first stage's classifier) that a stage of `recipe` trains.

    Args:
        prefixes (`Sequence[str]`): only parameters whose name starts with one of these (all when empty).

    The query projection that `fix_mean_pooling` fixed at zero is never among them, nor the image projection that
    `train.visual_projection: whitened` fixed at a whitening (also when a `ClipTeacherTagger` wraps the model).
    """
    from .vision_pretraining import mean_pooling_query

    clip = getattr(model, "clip", model)  # the tagging stage's `ClipTeacherTagger` wraps the CLIPModel
    fixed = {id(param) for param in mean_pooling_query(clip)} if recipe.model.vision_pooling == "mean" else set()
    if recipe.train.visual_projection == "whitened" and hasattr(clip, "visual_projection"):
        fixed |= {id(param) for param in clip.visual_projection.parameters()}
    return [p for name, p in model.named_parameters()
            if id(p) not in fixed and (not prefixes or name.startswith(tuple(prefixes)))]


def sincos_position_table(grid: int, width: int, scale: float = 0.5):
    """2-D sine-cosine position codes `(grid * grid, width)`, x and y each taking half the channels."""
    import torch

    if width % 4:
        raise ConfigError(f"vision width {width} is not a multiple of 4", "pick a width divisible by 4")
    quarter = width // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                            indexing="ij")
    x, y = xs.reshape(-1, 1) * omega, ys.reshape(-1, 1) * omega
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1) * scale


def init_sincos_positions(model, scale: float = 0.5) -> None:
    """Set the vision position table of a `CLIPModel` to 2-D sine-cosine codes (class position: zeros)."""
    import torch

    table = model.vision_model.embeddings.position_embedding.weight
    grid = int(round(math.sqrt(table.shape[0] - 1)))
    with torch.no_grad():
        table[0].zero_()
        table[1:].copy_(sincos_position_table(grid, table.shape[1], scale))


# ---------------------------------------------------------------------------------------------------- training
def contrastive_loss(logits_per_image):
    """CLIP's symmetric InfoNCE over `[B, B + K]` image-text logits whose first B texts are the images' partners.

    The K extra texts (hard negatives) enter the image-to-text softmax only.
    """
    import torch
    import torch.nn.functional as F

    size = logits_per_image.shape[0]
    target = torch.arange(size, device=logits_per_image.device)
    image_to_text = F.cross_entropy(logits_per_image, target)
    text_to_image = F.cross_entropy(logits_per_image[:, :size].T, target)
    return (image_to_text + text_to_image) / 2


def _contrastive_loss(model, batch, ctx):
    output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   pixel_values=batch["pixel_values"])
    return {"loss": contrastive_loss(output.logits_per_image),
            "logit_scale": ctx.unwrapped_model.logit_scale.detach().exp()}


def _clamp_temperature(ctx) -> None:
    import torch

    with torch.no_grad():
        ctx.unwrapped_model.logit_scale.clamp_(max=MAX_LOGIT_SCALE)


# parameters that never get weight decay, besides every 1-d parameter (norm gains, biases): token, position and class
# embeddings (as in CLIP and DIME-FM) and the temperature
NO_DECAY_NAMES = ("token_embedding", "position_embedding", "class_embedding", "logit_scale")


def parameter_groups(model, params=None) -> dict[str, list]:
    """Split `params` (default: all of `model`'s) into `decay`, `no_decay` and `temperature` by parameter name.

    Weight decay applies to the matrices of linear layers and the patch projection only.
    """
    names = {id(p): name for name, p in model.named_parameters()}
    params = list(model.parameters() if params is None else params)
    groups = {"decay": [], "no_decay": [], "temperature": []}
    for p in params:
        name = names.get(id(p), "")
        if name.endswith("logit_scale"):
            groups["temperature"].append(p)
        elif p.ndim < 2 or any(part in name for part in NO_DECAY_NAMES):
            groups["no_decay"].append(p)
        else:
            groups["decay"].append(p)
    return groups


def _optimizer(params, recipe: CLIPTeacherRecipe, model):
    return _adamw(params, model, recipe.train.learning_rate, recipe.train.weight_decay,
                  recipe.train.temperature_learning_rate)


def _adamw(params, model, learning_rate: float, weight_decay: float, temperature_learning_rate: float | None = None):
    """AdamW over `params` of `model` in the groups of `parameter_groups` (empty groups left out)."""
    import torch

    groups = parameter_groups(model, params)
    settings = {"decay": {"weight_decay": weight_decay}, "no_decay": {"weight_decay": 0.0},
                "temperature": {"weight_decay": 0.0, "lr": temperature_learning_rate or learning_rate}}
    return torch.optim.AdamW([{"params": groups[name], **settings[name]} for name in settings if groups[name]],
                             lr=learning_rate)


def _scheduler(optimizer, total_steps: int, warmup_steps: int):
    import torch

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, warmup_steps))
        return warm * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(recipe: CLIPTeacherRecipe, options):
    """Train the CLIP teacher; the run folder becomes a transformers model folder with its evaluation and card.

    Stages of the run: `vision-pretraining` (when `pretrain.steps > 0`: the vision tower as a classifier of
    single-object images, `vision_pretraining`), then `contrastive` (CLIP's loss; with `train.lock_image_tower`
    the vision tower stays as the first stage left it and only the text side and the two projections learn, as LiT).
    A resumed run skips a finished stage.

    Args:
        recipe (`CLIPTeacherRecipe`): the recipe.
        options (`effhub.training.RunOptions`): output folder, seed, resume, precision, ...
    """
    import torch

    from ...data.captions import COLOURS, SHAPES, SPLIT_NAMES
    from ...recipes import recipe_to_dict
    from ...training import Run
    from .evaluation import evaluate_clip, images_to_uint8
    from .processing import build_clip_processor, save_clip_processor

    check_recipe(recipe)
    seed = options.seed_or(recipe.seed)
    world = build_world(recipe)
    start_from = recipe.tagging.start_from
    # build the cached splits on the main process first, so that ranks do not generate them twice
    pairs = world.pairs(recipe.world.train_pairs, seed=recipe.world.seed, split=SPLIT_NAMES["teacher"]["train"])
    singles = multis = None
    if recipe.pretrain.steps and not start_from:
        singles = world.single_object(recipe.pretrain.single_object_images, seed=recipe.world.seed,
                                      split=SPLIT_NAMES["teacher"]["single-train"])
        if recipe.pretrain.object_steps and recipe.pretrain.multi_object_images:
            multis = world.multilabel(recipe.pretrain.multi_object_images, seed=recipe.world.seed,
                                      split=SPLIT_NAMES["teacher"]["multi-train"])
    build_eval_splits(world, recipe)
    torch.manual_seed(seed)
    if start_from:
        model, processor = load_start_teacher(start_from)
        tokenizer = processor.tokenizer
    else:
        tokenizer = build_tokenizer(world, recipe, pairs["caption"])
        model = build_model(tokenizer, world.config.image_size, recipe)
        processor = build_clip_processor(tokenizer, world.config.image_size)
    labels = None
    if recipe.tagging.steps:
        from ...data.multilabel import multi_hot

        labels = multi_hot(pairs["labels"], len(world.class_names)).astype(np.float32)
    train_split = ClipPairs(images_to_uint8(pairs["image"]), pairs["caption"], labels)
    negatives = world.shape_swapped if recipe.train.shape_negatives else None
    collate = ClipCollator(tokenizer, negatives, recipe.seed)

    from .calibration import remove_prompt_common_direction

    with Run(options, method=METHOD_NAME, seed=seed, recipe=recipe_to_dict(recipe)) as run:
        trained = model
        if not start_from:
            if singles is not None:
                from .vision_pretraining import ClipTeacherVisionClassifier, head_outputs

                classifier = ClipTeacherVisionClassifier(
                    model.vision_model, head_outputs(recipe.pretrain.loss, len(COLOURS), len(SHAPES)),
                    num_classes=len(COLOURS) * len(SHAPES) if recipe.pretrain.presence_weight else 0)
                images, collate_images = pretraining_images(world, recipe, model, singles, multis)
                run.train_stage("vision-pretraining", classifier, pretraining_phases(recipe, classifier), images,
                                collate_fn=collate_images)
            if recipe.train.visual_projection == "whitened":
                from .calibration import whiten_visual_projection
                from .processing import pixel_values_from_uint8

                # every rank computes the same map from the same images (a resumed run's checkpoint then replaces it)
                whiten_visual_projection(model, pixel_values_from_uint8(
                    train_split.pixels[:recipe.train.whitening_images]))
            trained = run.train_stage("contrastive", model, [contrastive_phase(recipe, model)],
                                      {"pairs": train_split}, collate_fn=collate).model
            if recipe.train.center_class_prompts:
                remove_prompt_common_direction(trained, tokenizer, world.zero_shot_prompts())
        if recipe.tagging.steps:
            from .tagging import ClipTeacherTagger

            tagger = ClipTeacherTagger(trained)
            tag_collate = ClipCollator(tokenizer, negatives, recipe.seed, tag_classes=world.class_names)
            trained = run.train_stage("tagging", tagger, [tagging_phase(recipe, tagger)], {"pairs": train_split},
                                      collate_fn=tag_collate).model.clip
            if recipe.train.center_class_prompts:
                # again: the tagging stage gives the class prompts a common direction (the mean normalised prompt's
                # norm 0.02 -> 0.72 in the shipped run; zero-shot multi-label mAP by cosine 51.8 with the second
                # centring, docs/clip-teacher.md)
                remove_prompt_common_direction(trained, tokenizer, world.zero_shot_prompts())
        run.save_pretrained(trained)
        if run.is_main_process:
            metrics = evaluate_clip(trained, tokenizer, world, recipe)
            save_clip_processor(processor, run.layout.root)
            write_results_and_card(run.layout.root, recipe, metrics, trained, world)
        run.wait_for_everyone()
    return run.layout.root


def load_start_teacher(name_or_path: str):
    """`(CLIPModel, processor)` that `tagging.start_from` names: a shipped teacher's name, or a model folder."""
    from pathlib import Path

    from transformers import AutoTokenizer, CLIPModel, CLIPTokenizer

    from ..loading import load_pretrained
    from .processing import build_clip_processor
    from .weights import SHIPPED_DIR, base_teacher_path

    folder = base_teacher_path(name_or_path) if (SHIPPED_DIR / name_or_path).is_dir() else Path(name_or_path)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"tagging.start_from is {name_or_path!r}, neither a shipped teacher nor a model folder",
                          "name a shipped teacher (base) or a folder holding a CLIPModel and its processor")
    model = load_pretrained(CLIPModel, folder)
    loaded = AutoTokenizer.from_pretrained(folder)
    # the same BPE model as a new tokenizer, built as the first stages build theirs: a loaded tokenizer would save
    # its loading arguments (is_local, max_length, ...) into the run's tokenizer_config.json
    vocab, merges = _bpe_model(loaded)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=loaded.model_max_length)
    return model, build_clip_processor(tokenizer, model.config.vision_config.image_size)


def _bpe_model(tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary and the ordered merges of a fast CLIP tokenizer's BPE model."""
    import json

    bpe = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    merges = [tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge) for merge in bpe["merges"]]
    return bpe["vocab"], merges


def pretraining_images(world, recipe: CLIPTeacherRecipe, model, singles, multis=None) -> tuple[dict, dict]:
    """The first stage's training images (with their mirror images) and collate functions, by dataset key:
    `images` (single objects and their class) and, with `object_steps`, `objects` (single- and multi-object images
    with their objects)."""
    import json

    from .evaluation import images_to_uint8
    from .vision_pretraining import (
        ClipLabelledImages, ClipObjectImages, collate_labelled_images, collate_object_images,
    )

    single_pixels = images_to_uint8(singles["image"])
    images = {"images": ClipLabelledImages(single_pixels, singles["label"], flipped_copies=True)}
    collate = {"images": collate_labelled_images}
    if recipe.pretrain.object_steps:
        splits = [split for split in (singles, multis) if split is not None]
        pixels = np.concatenate([single_pixels] + [images_to_uint8(split["image"]) for split in splits[1:]])
        objects = [json.loads(records) for split in splits for records in split["objects"]]
        vision = model.config.vision_config
        images["objects"] = ClipObjectImages(world, pixels, objects, vision.image_size // vision.patch_size,
                                             flipped_copies=True)
        collate["objects"] = collate_object_images
    return images, collate


def pretraining_phases(recipe: CLIPTeacherRecipe, classifier) -> list:
    """The first stage's phases: `supervised` (single objects), then `objects` when `object_steps` > 0 (every object
    of single- and multi-object images, through the same head: `objects_loss`, plus `presence_loss` with
    `presence_weight`); each trains the vision tower and the heads with AdamW, warm-up and cosine decay."""
    from ...training import Phase, Update
    from ...data.captions import COLOURS, SHAPES
    from .vision_pretraining import class_loss, objects_loss, presence_loss, region_presence_loss

    p = recipe.pretrain

    def single_loss(model, batch, ctx):
        return class_loss(model(batch["pixel_values"]), batch["labels"], p.loss, len(COLOURS), len(SHAPES))

    def object_loss(model, batch, ctx):
        logits = model(batch["pixel_values"], patch_logits=True)
        loss = objects_loss(logits.pooled, logits.patches, batch["object_labels"], batch["object_covers"], p.loss,
                            len(COLOURS), len(SHAPES))
        if p.presence_weight:
            loss = loss + p.presence_weight * presence_loss(logits.presence, batch["object_labels"])
            if p.presence_regions:
                loss = loss + region_presence_loss(logits.patch_presence, batch["object_labels"],
                                                   batch["object_covers"])
        return loss

    def phase(name, steps, dataset, loss, learning_rate):
        return Phase(
            name=name, steps=steps, batch_size=p.batch_size, max_grad_norm=p.max_grad_norm,
            updates=[Update(
                name="classes", dataset=dataset, loss=loss,
                parameters=lambda classifier: trainable_parameters(classifier, recipe),
                optimizer=lambda params: _adamw(list(params), classifier, learning_rate, p.weight_decay),
                scheduler=lambda optimizer, total: _scheduler(optimizer, total, p.warmup_steps),
            )],
        )

    phases = [phase("supervised", p.steps, "images", single_loss, p.learning_rate)]
    if p.object_steps:
        phases.append(phase("objects", p.object_steps, "objects", object_loss, p.object_learning_rate))
    return phases


def contrastive_phase(recipe: CLIPTeacherRecipe, model):
    """The contrastive stage's one phase (the image tower left out when the recipe locks it)."""
    from ...training import Phase, Update

    locked = ("text_model.", "text_projection.", "visual_projection.", "logit_scale")
    return Phase(
        name="contrastive", steps=recipe.train.steps, batch_size=recipe.train.batch_size,
        max_grad_norm=recipe.train.max_grad_norm, on_step_end=_clamp_temperature,
        updates=[Update(
            name="clip", dataset="pairs", loss=_contrastive_loss,
            parameters=lambda clip: trainable_parameters(clip, recipe, locked if recipe.train.lock_image_tower else ()),
            optimizer=lambda params: _optimizer(list(params), recipe, model),
            scheduler=lambda optimizer, total: _scheduler(optimizer, total, recipe.train.warmup_steps),
        )],
    )


def tagging_phase(recipe: CLIPTeacherRecipe, tagger):
    """The tagging stage's one phase: CLIP's loss on the captions plus `tagging.weight` times the tagging loss;
    the vision tower locked (every parameter but the text tower, the two projections, the temperature and the
    tagger's three scalars)."""
    from ...training import Phase, Update

    t = recipe.tagging
    trained = ("clip.text_model.", "clip.text_projection.", "clip.visual_projection.", "clip.logit_scale", "tag_")

    def loss(model, batch, ctx):
        from .tagging import tagging_loss

        output = model.clip(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            pixel_values=batch["pixel_values"], output_hidden_states=True)
        contrastive = contrastive_loss(output.logits_per_image)
        # the tag regions start from the last vision block's input of this forward: the tower runs once per step
        tag_logits = model.tag_logits(None, batch["tag_input_ids"], batch["tag_attention_mask"],
                                      last_block_input=output.vision_model_output.hidden_states[-2])
        tags = tagging_loss(tag_logits, batch["tag_labels"])
        return {"loss": contrastive + t.weight * tags, "contrastive_loss": contrastive.detach(),
                "tagging_loss": tags.detach(), "logit_scale": model.clip.logit_scale.detach().exp()}

    return Phase(
        name="tagging", steps=t.steps, batch_size=t.batch_size, max_grad_norm=t.max_grad_norm,
        on_step_end=_clamp_temperature,
        updates=[Update(
            name="tags", dataset="pairs", loss=loss,
            parameters=lambda model: trainable_parameters(model, recipe, trained),
            optimizer=lambda params: _adamw(list(params), tagger, t.learning_rate, t.weight_decay,
                                            recipe.train.temperature_learning_rate),
            scheduler=lambda optimizer, total: _scheduler(optimizer, total, t.warmup_steps),
        )],
    )


# ---------------------------------------------------------------------------------------------------- card
def eval_results_from_metrics(metrics: dict) -> dict:
    """The `eval_results.json` contract from `evaluate_clip`'s metrics."""
    zero_shot, retrieval = metrics["zero_shot"], metrics["retrieval"]
    results = [
        {
            "task_type": "zero-shot-image-classification",
            "task_name": "Zero-shot image classification",
            "dataset_type": DATASET_TYPE,
            "dataset_name": f"{DATASET_NAME} (single object)",
            "dataset_split": "single-object-test",
            "metric_type": name,
            "metric_name": label,
            "metric_value": float(zero_shot[name]),
        }
        for name, label in (("accuracy", "Top-1 accuracy"), ("top5_accuracy", "Top-5 accuracy"))
    ]
    for key, value in sorted(retrieval.items()):
        if "@" not in key:
            continue
        direction, k = key.rsplit("_r@", 1)
        results.append(
            {
                "task_type": "image-text-retrieval",
                "task_name": direction.replace("_", " ").replace(" to ", "-to-") + " retrieval",
                "dataset_type": DATASET_TYPE,
                "dataset_name": f"{DATASET_NAME} (pairs)",
                "dataset_split": "pairs-test",
                "metric_type": f"recall@{k}",
                "metric_name": f"{direction.replace('_', ' ')} R@{k}",
                "metric_value": float(value),
            }
        )
    extra = {
        "zero_shot_chance": zero_shot["chance"],
        "zero_shot_samples": zero_shot["num_samples"],
        "zero_shot_classes": zero_shot["num_classes"],
        "retrieval_pairs": retrieval["num_pairs"],
    }
    for key in ("colour_accuracy", "shape_accuracy", "colour_right_shape_wrong", "shape_right_colour_wrong"):
        if key in zero_shot:
            extra[f"zero_shot_{key}"] = zero_shot[key]
    return {"model_name": MODEL_NAME, "results": results, "extra": extra}


def _training_summary(recipe: CLIPTeacherRecipe) -> str:
    """The card's sentence on how the teacher was trained (stages and phases the recipe ran)."""
    if not recipe.pretrain.steps:
        return "Trained contrastively (CLIP's loss). " + _tagging_summary(recipe)
    first = "Its vision tower first learned to name colours and shapes of single objects"
    if recipe.pretrain.object_steps:
        first += ", then every object of multi-object scenes from the patches it covers"
        if recipe.pretrain.presence_weight:
            first += " and which classes a scene holds from its pooled output"
    if recipe.train.visual_projection == "whitened":
        first += "; its projection into the joint space was fixed at the whitening of its pooled features"
    if recipe.train.lock_image_tower:
        first += "; it was then locked while the text tower learned contrastively (LiT)"
    else:
        first += "; then both towers learned contrastively (CLIP's loss)"
    return first + ". " + _tagging_summary(recipe)


def _tagging_summary(recipe: CLIPTeacherRecipe) -> str:
    if not recipe.tagging.steps:
        return ""
    start = f"Starting from the teacher '{recipe.tagging.start_from}', c" if recipe.tagging.start_from else "Last, c"
    return (start + "lass prompts learned to tag its scenes: every prompt scored against every patch, the patches "
            "weighed by a spatial softmax, a binary cross-entropy per class beside CLIP's loss on the captions "
            f"({recipe.tagging.steps} steps, the vision tower locked). ")


def write_results_and_card(run_dir, recipe: CLIPTeacherRecipe, metrics: dict, model, world):
    """Write `eval_results.json` and `README.md` (card) into the run folder."""
    from ...data.captions import ZERO_SHOT_TEMPLATE
    from ...hub.cards import write_eval_results, write_model_card
    from ...recipes import recipe_to_dict

    eval_results = eval_results_from_metrics(metrics)
    write_eval_results(run_dir, **eval_results)
    config = model.config
    card_spec = {
        "template": "default",
        "model_name": MODEL_NAME,
        "library_name": "transformers",
        "license": "apache-2.0",
        "tags": ["clip", "zero-shot-image-classification", "effhub-clip-teacher", "generated-data"],
        "datasets": [DATASET_TYPE],
        "pipeline_tag": "zero-shot-image-classification",
        "summary": "A small CLIP model (plain `transformers.CLIPModel`) trained by effhub on its generated caption "
        f"world (version {world.config.version}): coloured shapes with varied captions. "
        + _training_summary(recipe)
        + "It is "
        "the offline teacher for DIME-FM distillation and the base model for DualCoOp adapters; with a network, "
        "any CLIP checkpoint can take its place.",
        "model_details": {
            "parameters": sum(p.numel() for p in model.parameters()),
            "image size": f"{config.vision_config.image_size}x{config.vision_config.image_size}",
            "patch size": config.vision_config.patch_size,
            "text positions": config.text_config.max_position_embeddings,
            "vocabulary": config.text_config.vocab_size,
            "classes (zero-shot)": len(world.class_names),
            "zero-shot prompt": ZERO_SHOT_TEMPLATE.format("a <colour> <shape>"),
        },
        "usage": "from transformers import pipeline\n"
        "classifier = pipeline(\"zero-shot-image-classification\", model=\"<repo or folder>\")\n"
        "classifier(image, candidate_labels=[\"a red circle\", \"a blue square\"])",
        "training": recipe_to_dict(recipe),
        "limitations": "Trained only on effhub's generated shapes (64 colour-shape classes, "
        f"{world.config.image_size}x{world.config.image_size} images); it knows nothing of natural images or open "
        "vocabulary. Zero-shot chance level is 1/64. Every text position was reached by at least "
        f"{recipe.tokenizer.min_trained_fraction:.0%} of the training captions; a DualCoOp prompt with "
        f"{recipe.tokenizer.learned_contexts} learned contexts fits.",
        "citation": bibtex(*(("radford2021clip", "zhai2022lit")
                               + (("huang2024tag2text",) if recipe.tagging.steps else ()))),
    }
    return write_model_card(run_dir, card_spec, eval_results)


__all__ = [
    "CLIPTeacherRecipe",
    "ClipWorldRecipe",
    "ClipTokenizerRecipe",
    "ClipModelRecipe",
    "ClipTrainRecipe",
    "ClipTaggingRecipe",
    "ClipEvalRecipe",
    "ClipPairs",
    "ClipCollator",
    "contrastive_loss",
    "parameter_groups",
    "build_world",
    "build_eval_splits",
    "build_tokenizer",
    "build_model",
    "train",
    "tagging_phase",
    "load_start_teacher",
    "eval_results_from_metrics",
    "write_results_and_card",
]
