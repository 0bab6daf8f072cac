"""Evaluation of a CLIP-style model on the caption world: zero-shot classification and image-text retrieval.

Zero-shot classification follows CLIP (Radford et al., ICML 2021): every class name is put in a prompt, images are
assigned the class whose prompt embedding has the highest cosine similarity. Retrieval reports recall@k in both
directions (image→text and text→image) on held-out pairs. Identical caption texts get identical embeddings, so a
retrieval counts as a hit when no candidate scores strictly higher than the true one (ties are not held against
the model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import CheckpointError, ConfigError

RETRIEVAL_KS = (1, 5)


def images_to_uint8(images) -> np.ndarray:
    """Stack PIL images (all of one size) into an `(N, H, W, 3)` uint8 array."""
    return np.stack([np.asarray(image.convert("RGB"), dtype=np.uint8) for image in images])


def encode_images(model, pixel_values, batch_size: int = 256):
    """L2-normalised image embeddings (projected) of `pixel_values` `(N, 3, H, W)`."""
    import torch

    chunks = []
    with torch.no_grad():
        for start in range(0, len(pixel_values), batch_size):
            out = model.get_image_features(pixel_values=pixel_values[start : start + batch_size])
            chunks.append(_features(out))
    embeddings = torch.cat(chunks)
    return embeddings / embeddings.norm(dim=-1, keepdim=True)


def encode_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 256):
    """L2-normalised text embeddings (projected) of `texts`, tokenised with CLIP padding and truncation."""
    import torch

    chunks = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                              return_tensors="pt")
            out = model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            chunks.append(_features(out))
    embeddings = torch.cat(chunks)
    return embeddings / embeddings.norm(dim=-1, keepdim=True)


def _features(output):
    # transformers 5 returns a model output whose pooler_output is the projected embedding; older versions a tensor
    return output if hasattr(output, "norm") else output.pooler_output


def similarity_scores(model, tokenizer, pixel_values, texts: Sequence[str], batch_size: int = 256):
    """Cosine similarities `[num_images, num_texts]` of the model's normalised image and text embeddings (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        text = encode_texts(model, tokenizer, texts, batch_size)
        image = encode_images(model, pixel_values, batch_size)
    finally:
        model.train(was_training)
    return image @ text.T


def zero_shot_accuracy(model, tokenizer, pixel_values, labels, prompts: Sequence[str], batch_size: int = 256,
                       scores=None) -> dict:
    """Top-1 and top-5 zero-shot accuracy of `model` over `pixel_values` with one prompt per class.

    Args:
        pixel_values (`torch.Tensor`): `(N, 3, H, W)` processed images.
        labels (`Sequence[int]`): the class index of each image.
        prompts (`Sequence[str]`): the prompt of each class, in class-index order.
        scores (`torch.Tensor`, *optional*): precomputed `similarity_scores` of these images and prompts.
    """
    import torch

    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(labels) != len(pixel_values):
        raise ConfigError(f"{len(labels)} labels for {len(pixel_values)} images", "pass one label per image")
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(prompts)):
        raise ConfigError(f"labels span {int(labels.min())}..{int(labels.max())} but there are {len(prompts)} prompts",
                          "pass one prompt per class, in class-index order")
    if scores is None:
        scores = similarity_scores(model, tokenizer, pixel_values, prompts, batch_size)
    top = scores.topk(min(5, len(prompts)), dim=-1).indices
    top1 = (top[:, 0] == labels).float().mean().item()
    top5 = (top == labels[:, None]).any(dim=-1).float().mean().item()
    return {"accuracy": top1, "top5_accuracy": top5, "chance": 1.0 / len(prompts), "num_samples": int(len(labels)),
            "num_classes": len(prompts)}


def colour_shape_accuracy(predicted, labels, class_names: Sequence[str]) -> dict:
    """How often the predicted class has the right colour, the right shape, both, or only one of them.

    Args:
        predicted, labels (`Sequence[int]`): predicted and true class indices into `class_names`.
        class_names (`Sequence[str]`): "<colour> <shape>" names.
    """
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    colours = np.array([name.split(" ")[0] for name in class_names])
    shapes = np.array([name.split(" ", 1)[1] for name in class_names])
    colour_right = colours[predicted] == colours[labels]
    shape_right = shapes[predicted] == shapes[labels]
    return {
        "colour_accuracy": float(colour_right.mean()),
        "shape_accuracy": float(shape_right.mean()),
        "colour_right_shape_wrong": float((colour_right & ~shape_right).mean()),
        "shape_right_colour_wrong": float((shape_right & ~colour_right).mean()),
        "both_wrong": float((~colour_right & ~shape_right).mean()),
        "colour_chance": 1.0 / len(set(colours.tolist())),
        "shape_chance": 1.0 / len(set(shapes.tolist())),
    }


def retrieval_recalls(model, tokenizer, pixel_values, captions: Sequence[str], ks: Sequence[int] = RETRIEVAL_KS,
                      batch_size: int = 256) -> dict:
    """Recall@k of image→text and text→image retrieval over paired `pixel_values[i]` ↔ `captions[i]`."""

    if len(captions) != len(pixel_values):
        raise ConfigError(f"{len(captions)} captions for {len(pixel_values)} images", "pass one caption per image")
    scores = similarity_scores(model, tokenizer, pixel_values, captions, batch_size)
    true = scores.diagonal()
    # rank of the true partner = how many candidates score strictly higher
    image_rank = (scores > true[:, None]).sum(dim=1)
    text_rank = (scores > true[None, :]).sum(dim=0)
    results = {"num_pairs": int(len(captions))}
    for k in ks:
        results[f"image_to_text_r@{k}"] = (image_rank < k).float().mean().item()
        results[f"text_to_image_r@{k}"] = (text_rank < k).float().mean().item()
    return results


def evaluate_clip(model, tokenizer, world, recipe) -> dict:
    """Zero-shot accuracy on the world's single-object test split and retrieval on its held-out pairs."""
    from .processing import pixel_values_from_uint8
    from .training_clip_teacher import build_eval_splits

    zero_shot_split, retrieval_split = build_eval_splits(world, recipe)
    pixel_values = pixel_values_from_uint8(images_to_uint8(zero_shot_split["image"]))
    scores = similarity_scores(model, tokenizer, pixel_values, world.zero_shot_prompts(), recipe.eval.batch_size)
    zero_shot = zero_shot_accuracy(model, tokenizer, pixel_values, zero_shot_split["label"],
                                   world.zero_shot_prompts(), recipe.eval.batch_size, scores=scores)
    zero_shot.update(colour_shape_accuracy(scores.argmax(dim=-1).numpy(), zero_shot_split["label"],
                                           world.class_names))
    retrieval = retrieval_recalls(
        model, tokenizer, pixel_values_from_uint8(images_to_uint8(retrieval_split["image"])),
        retrieval_split["caption"], batch_size=recipe.eval.batch_size,
    )
    return {"zero_shot": zero_shot, "retrieval": retrieval}


def evaluate_run(run_dir, args=None) -> dict:
    """`effhub eval <run> [--zero-shot]`: reload a teacher folder with plain transformers and measure it again."""
    from transformers import AutoProcessor, CLIPModel

    from ...recipes import build_dataclass
    from ...training import RUN_INFO_FILE
    from ..loading import load_pretrained
    from .training_clip_teacher import CLIPTeacherRecipe, build_world

    run_dir = Path(run_dir)
    info_file = run_dir / RUN_INFO_FILE
    if not info_file.is_file() or not (run_dir / "config.json").is_file():
        raise CheckpointError(f"'{run_dir}' is not a clip-teacher run folder (no {RUN_INFO_FILE} or config.json)",
                              "pass the --output-dir of `effhub train clip-teacher`")
    recipe = build_dataclass(CLIPTeacherRecipe, json.loads(info_file.read_text())["recipe"])
    model = load_pretrained(CLIPModel, run_dir).eval()
    processor = AutoProcessor.from_pretrained(run_dir)
    metrics = evaluate_clip(model, processor.tokenizer, build_world(recipe), recipe)
    return {"split": "test", **metrics}


__all__ = [
    "RETRIEVAL_KS",
    "images_to_uint8",
    "encode_images",
    "encode_texts",
    "zero_shot_accuracy",
    "colour_shape_accuracy",
    "retrieval_recalls",
    "evaluate_clip",
    "evaluate_run",
]
