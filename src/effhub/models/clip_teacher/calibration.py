"""Removing the direction that every class prompt shares from a CLIP text tower.

Measured on the teacher shipped before this step: its 64 class-prompt embeddings share a common component (the norm
of their mean is 0.73) that lies close to the mean patch embedding (cosine 0.48). CLIP's contrastive loss cannot see
a component that every text carries (it shifts every logit of a row by the same amount), so training leaves it in
place; but it makes a background patch, or an image without the class, look similar to every prompt, which is what
per-class cosine scores (dense localisation, zero-shot multi-label) read. Projecting that direction out of the text
embeddings is a linear map folded into the text projection, so the result is still a plain `CLIPModel`; every text
(prompts and captions alike) loses its component along that one direction of the joint space, and the image tower is
untouched. (Subtracting the mean prompt instead, a constant shift folded into a bias, centres the prompts as well but
distorts captions: held-out retrieval R@1 fell from 0.49 to 0.22, against 0.45 with the projection.)

Also here: fixing the image projection at the whitening of the locked tower's pooled features
(`whiten_visual_projection`, the recipe's `train.visual_projection: whitened`). Measured on the shipped teacher: its
learned projection keeps the multi-label information of crowded scenes, but along directions it shrinks, so a
classifier of bounded norm (a prompt's unit class vector times the logit scale) cannot read it (docs/dualcoop.md,
"Where the ceiling is").
"""

from __future__ import annotations

from typing import Sequence

from ...errors import ConfigError
from .probing import pooled_image_features


def remove_prompt_common_direction(model, tokenizer, prompts: Sequence[str]) -> dict:
    """Project the mean direction of the normalised `prompts` embeddings out of `model`'s text projection, in place.

    Args:
        model (`CLIPModel`): the model to change (its `text_projection.weight` becomes `(I - u u^T) W`, `u` the unit
            mean prompt direction in the joint space).
        tokenizer: the model's tokenizer.
        prompts (`Sequence[str]`): the class prompts whose shared direction is removed (at least 2).

    Returns:
        `dict`: `mean_norm_before` / `mean_norm_after`, the norm of the mean normalised prompt embedding.

    Raises:
        `ConfigError`: fewer than two prompts.
    """
    import torch

    from .evaluation import encode_texts

    if len(prompts) < 2:
        raise ConfigError(f"{len(prompts)} prompt(s) have no common direction to remove", "pass every class prompt")
    with torch.no_grad():
        mean = encode_texts(model, tokenizer, list(prompts)).mean(dim=0)
        direction = mean / mean.norm()
        weight = model.text_projection.weight
        projector = torch.eye(len(direction), dtype=weight.dtype) - torch.outer(direction, direction).to(weight.dtype)
        weight.copy_(projector @ weight)
        after = encode_texts(model, tokenizer, list(prompts)).mean(dim=0)
    return {"mean_norm_before": float(mean.norm()), "mean_norm_after": float(after.norm())}


def whiten_visual_projection(model, pixel_values, batch_size: int = 256, ridge: float = 1e-4) -> dict:
    """Set `model`'s image projection to the whitening of its vision tower's pooled features on `pixel_values`, in
    place: the projected features of those images then have (nearly) identity covariance, so no direction of the
    joint space is shrunk below another.

    The map is `W = V diag((l + ridge * max(l))^-1/2) V^T` with `l, V` the eigenvalues and eigenvectors of the pooled
    features' covariance (the ridge keeps near-null directions, such as the one a mean-pooled tower may leave, from
    being blown up). The model stays a plain `CLIPModel`; the projection is not trained afterwards when the recipe
    asks for it (`train.visual_projection: whitened`).

    Args:
        model (`CLIPModel`): the model to change; its projection must be square (`projection_dim` equal to the vision
            tower's width).
        pixel_values (`torch.Tensor`): `(N, 3, H, W)` images the covariance is estimated on (more than the width).
        batch_size (`int`): images per forward pass.
        ridge (`float`): added to every eigenvalue, relative to the largest.

    Returns:
        `dict`: `images`, `eigenvalue_min` / `eigenvalue_max` of the covariance, `ridge`.

    Raises:
        `ConfigError`: a projection that is not square, or no more images than the width.
    """
    import torch

    weight = model.visual_projection.weight
    width = weight.shape[1]
    if weight.shape[0] != width:
        raise ConfigError(f"the image projection maps {width} to {weight.shape[0]} dimensions; whitening needs a "
                          "square one", "set model.projection_dim to model.vision_hidden_size")
    if len(pixel_values) <= width:
        raise ConfigError(f"{len(pixel_values)} images cannot estimate the covariance of {width} features",
                          f"use more than {width} images (train.whitening_images)")
    was_training = model.training
    pooled = pooled_image_features(model, pixel_values, batch_size)  # leaves the model in eval mode
    model.train(was_training)
    with torch.no_grad():
        eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(pooled.T.double()))
        scales = (eigenvalues.clamp_min(0) + ridge * eigenvalues.max()).rsqrt()
        weight.copy_((eigenvectors @ torch.diag(scales) @ eigenvectors.T).to(weight.dtype))
    return {"images": len(pixel_values), "eigenvalue_min": float(eigenvalues.min()),
            "eigenvalue_max": float(eigenvalues.max()), "ridge": ridge}


__all__ = ["remove_prompt_common_direction", "whiten_visual_projection"]
