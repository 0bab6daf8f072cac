"""What a CLIP teacher's frozen features carry: linear probes, multi-label average precision and dense patch features.

These are the checks a researcher runs before adapting (DualCoOp, arXiv 2206.09541) or distilling (DIME-FM,
arXiv 2303.18232) a CLIP model: whether a linear classifier on the frozen image features separates the classes,
whether multi-label recognition degrades when only part of the labels are known, and whether the patch tokens of
the image tower point at the object a class prompt names. Every figure comes with its standard error.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ...errors import ConfigError

DENSE_MODES = ("tokens", "values")
# the L2 weights `select_l2` sweeps (CLIP's protocol sweeps a log range on a validation split)
L2_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def _no_grad_eval(model):
    import torch

    model.eval()
    return torch.no_grad()


def pooled_image_features(model, pixel_values, batch_size: int = 256):
    """The image tower's pooled output before the projection (`vision_model(...).pooler_output`), `(N, width)`."""
    import torch

    chunks = []
    with _no_grad_eval(model):
        for start in range(0, len(pixel_values), batch_size):
            chunks.append(model.vision_model(pixel_values=pixel_values[start: start + batch_size]).pooler_output)
    return torch.cat(chunks)


def patch_embeddings(model, pixel_values, mode: str = "tokens", batch_size: int = 256):
    """Projected, L2-normalised embeddings of every patch, `(N, grid * grid, projection_dim)`.

    Args:
        mode (`str`): `"tokens"`: the last layer's patch tokens through the post-layernorm and the visual
            projection, as the class token is; `"values"`: the value path of the last attention layer only
            (its query-key mixing and MLP skipped), as MaskCLIP (Zhou et al., ECCV 2022) reads dense features
            from a CLIP ViT.
    """
    import torch

    if mode not in DENSE_MODES:
        raise ConfigError(f"dense mode is {mode!r}", f"use one of {list(DENSE_MODES)}")
    vision = model.vision_model
    chunks = []
    with _no_grad_eval(model):
        for start in range(0, len(pixel_values), batch_size):
            batch = pixel_values[start: start + batch_size]
            output = vision(pixel_values=batch, output_hidden_states=True)
            if mode == "tokens":
                tokens = output.last_hidden_state[:, 1:]
            else:
                last = vision.encoder.layers[-1]
                hidden = last.layer_norm1(output.hidden_states[-2])
                tokens = last.self_attn.out_proj(last.self_attn.v_proj(hidden))[:, 1:]
            embedded = model.visual_projection(vision.post_layernorm(tokens))
            chunks.append(embedded / embedded.norm(dim=-1, keepdim=True))
    return torch.cat(chunks)


def standardise(train, test):
    """Scale both feature sets by the training set's mean and standard deviation."""
    mean, std = train.mean(0, keepdim=True), train.std(0, keepdim=True).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def fit_linear_probe(features, targets, num_classes: int, multilabel: bool = False, known=None,
                     l2: float = 1e-3, max_iter: int = 200, seed: int = 0):
    """A linear classifier (logistic regression, full-batch L-BFGS) on frozen `features`; returns `(weight, bias)`.

    Args:
        features (`torch.Tensor`): `(N, D)` standardised features.
        targets (`torch.Tensor`): class indices `(N,)`, or `(N, C)` 0/1 labels with `multilabel=True`.
        known (`torch.Tensor`, *optional*): `(N, C)` boolean mask of the labels that may be used (partial labels);
            the others are left out of the loss.
        l2 (`float`): weight of the L2 penalty on the weights.
    """
    import torch

    torch.manual_seed(seed)
    features = features.float()
    weight = torch.zeros(features.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  line_search_fn="strong_wolfe")
    if multilabel:
        targets = targets.float()
        mask = torch.ones_like(targets) if known is None else known.float()
        if mask.sum() == 0:
            raise ConfigError("no label is known to the linear probe", "keep a positive fraction of the labels")

    def closure():
        optimizer.zero_grad()
        logits = features @ weight + bias
        if multilabel:
            losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            loss = (losses * mask).sum() / mask.sum()
        else:
            loss = torch.nn.functional.cross_entropy(logits, targets)
        loss = loss + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def select_l2(features, targets, num_classes: int, multilabel: bool = False, known=None, grid=L2_GRID,
              validation_fraction: float = 0.2, max_iter: int = 200, seed: int = 0) -> tuple[float, dict]:
    """The L2 weight of `fit_linear_probe` chosen on a validation split of the training rows, as CLIP's linear-probe
    protocol does (Radford et al., 2021, appendix A.3: a sweep of the regularisation on a validation set).

    Every value of `grid` fits on the other rows and is scored on the held-out ones: top-1 accuracy, or mAP over the
    known label entries with `multilabel`; the best score wins (ties: the stronger penalty).

    Returns:
        `(l2, {l2: validation score})`.
    """
    import torch

    count = len(features)
    held_out = max(1, int(round(count * validation_fraction)))
    if count - held_out < 1:
        raise ConfigError(f"{count} training rows are too few to hold out a validation split",
                          "give the probe at least 2 training rows")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    validation, fit = order[:held_out], order[held_out:]
    scores = {}
    for l2 in sorted(grid, reverse=True):
        weight, bias = fit_linear_probe(features[fit], targets[fit], num_classes, multilabel=multilabel,
                                        known=None if known is None else known[fit], l2=l2, max_iter=max_iter,
                                        seed=seed)
        logits = (features[validation].float() @ weight + bias).numpy()
        truth = targets[validation].numpy()
        if multilabel:
            mask = np.ones_like(truth, dtype=bool) if known is None else known[validation].numpy().astype(bool)
            scores[l2] = float(np.nanmean(masked_average_precisions(logits, truth, mask)))
        else:
            scores[l2] = float((logits.argmax(axis=1) == truth).mean())
    best = max(scores, key=lambda l2: (scores[l2], l2))
    return best, scores


def masked_average_precisions(scores: np.ndarray, targets: np.ndarray, known: np.ndarray) -> np.ndarray:
    """`average_precisions` of each class over only the rows whose label entry is known."""
    result = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        rows = known[:, c]
        if rows.any():
            result[c] = average_precisions(scores[rows, c:c + 1], targets[rows, c:c + 1])[0]
    return result


def average_precisions(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Average precision of each class (column) that has at least one positive; NaN for the others."""
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets) > 0
    result = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        positives = targets[:, c].sum()
        if positives == 0:
            continue
        order = np.argsort(-scores[:, c], kind="stable")
        hits = targets[order, c]
        precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
        result[c] = precision_at_hit.sum() / positives
    return result


def mean_average_precision(scores, targets, bootstrap: int = 200, seed: int = 0) -> dict:
    """mAP in percent over classes with a positive, and its bootstrap standard error (images resampled)."""
    scores, targets = np.asarray(scores), np.asarray(targets)
    value = float(np.nanmean(average_precisions(scores, targets)) * 100)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):
        index = rng.integers(0, len(scores), len(scores))
        draws.append(np.nanmean(average_precisions(scores[index], targets[index])) * 100)
    return {"map": value, "map_se": float(np.std(draws, ddof=1)) if bootstrap > 1 else float("nan"),
            "num_images": int(len(scores)), "num_classes": int(scores.shape[1])}


def proportion(hits: Sequence[bool]) -> dict:
    """A proportion and its binomial standard error."""
    hits = np.asarray(hits, dtype=bool)
    p = float(hits.mean()) if hits.size else float("nan")
    return {"value": p, "se": math.sqrt(p * (1 - p) / hits.size) if hits.size else float("nan"), "n": int(hits.size)}


def patch_coverage(world, objects: Sequence[dict], grid: int) -> np.ndarray:
    """Fraction of each patch of a `grid x grid` image covered by each object's silhouette, `(objects, grid*grid)`."""
    side = world.config.image_size
    cell = side // grid
    covers = []
    for record in objects:
        mask = world.object_mask(record)
        covers.append(mask[: cell * grid, : cell * grid].reshape(grid, cell, grid, cell).mean(axis=(1, 3)).ravel())
    return np.stack(covers)


def dense_localisation(world, patch_features, class_text_embeddings, objects_per_image: Sequence[Sequence[dict]],
                       min_cover: float = 0.5) -> dict:
    """How often the patch most similar to an object's class text lies on that object.

    Args:
        patch_features (`torch.Tensor`): `(N, P, D)` normalised patch embeddings (:func:`patch_embeddings`).
        class_text_embeddings (`torch.Tensor`): `(C, D)` normalised class prompt embeddings, in class-index order.
        objects_per_image: the objects of each image (the world's JSON records, with `class_name`).
        min_cover (`float`): a patch lies on an object when the object's silhouette covers at least this fraction
            of it.

    Returns: the hit rate with its standard error; `chance`: the expected hit rate of a patch picked at random
    from the image; `chance_object_patch`: the same for a patch picked at random among the patches that lie on
    some object (a feature that finds objects but not which one); `on_other_object`: how often the best patch
    lies on another object only.
    """
    grid = int(round(math.sqrt(patch_features.shape[1])))
    hits, chance, chance_objects, other = [], [], [], []
    for features, objects in zip(patch_features, objects_per_image):
        cover = patch_coverage(world, objects, grid) >= min_cover
        any_object = cover.any(axis=0)
        for record, on_object in zip(objects, cover):
            text = class_text_embeddings[world.class_index(record["class_name"])]
            best = int((features @ text).argmax())
            hits.append(bool(on_object[best]))
            other.append(bool(any_object[best] and not on_object[best]))
            chance.append(float(on_object.mean()))
            chance_objects.append(float(on_object.sum() / max(any_object.sum(), 1)))
    result = proportion(hits)
    return {"accuracy": result["value"], "accuracy_se": result["se"], "num_objects": result["n"],
            "chance": float(np.mean(chance)), "chance_object_patch": float(np.mean(chance_objects)),
            "on_other_object": float(np.mean(other)), "grid": f"{grid}x{grid}", "min_cover": min_cover}


__all__ = [
    "DENSE_MODES",
    "pooled_image_features",
    "patch_embeddings",
    "standardise",
    "fit_linear_probe",
    "select_l2",
    "L2_GRID",
    "masked_average_precisions",
    "average_precisions",
    "mean_average_precision",
    "proportion",
    "patch_coverage",
    "dense_localisation",
]
