"""Removing the direction that every class prompt shares from a CLIP text tower.

Measured on the shipped teacher: its 64 class-prompt embeddings share a common component (the norm of their mean
is 0.73) that lies close to the mean patch embedding (cosine 0.48). CLIP's contrastive loss cannot see a component
that every text carries (it shifts every logit of a row by the same amount), so training leaves it in place; but it
makes a background patch, or an image without the class, look similar to every prompt, which is what per-class
cosine scores (dense localisation, zero-shot multi-label) read. Subtracting it is folded into the bias of the text
tower's final LayerNorm, so the result is still a plain `CLIPModel`, and every text (prompts and captions alike) is
shifted by the same vector.
"""

from __future__ import annotations

from typing import Sequence

from ...errors import ConfigError


def remove_prompt_common_direction(model, tokenizer, prompts: Sequence[str]) -> dict:
    """Shift every text embedding of `model` by minus the mean prompt direction (scaled to the prompts' mean norm),
    in place, so that the normalised embeddings of `prompts` are centred.

    Args:
        model (`CLIPModel`): the model to change (its `text_model.final_layer_norm` gets a new bias).
        tokenizer: the model's tokenizer.
        prompts (`Sequence[str]`): the class prompts whose shared direction is removed (at least 2).

    Returns:
        `dict`: `mean_norm_before` / `mean_norm_after` (the norm of the mean normalised prompt embedding) and
        `fit_residual` (how far the LayerNorm bias could express the shift; ~0 when the projection is full rank).

    Raises:
        `ConfigError`: fewer than two prompts.
    """
    import torch

    from .evaluation import _features

    if len(prompts) < 2:
        raise ConfigError(f"{len(prompts)} prompt(s) have no common direction to remove", "pass every class prompt")

    def raw_embeddings():
        batch = tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
        return _features(model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))

    with torch.no_grad():
        raw = raw_embeddings()
        norms = raw.norm(dim=-1, keepdim=True)
        mean_direction = (raw / norms).mean(dim=0)
        shift = norms.mean() * mean_direction
        projection = model.text_projection.weight  # (joint width, text width): features = W @ final LayerNorm
        delta = torch.linalg.lstsq(projection.double(), shift.double()[:, None]).solution[:, 0]
        residual = float((projection.double() @ delta - shift.double()).norm() / shift.norm())
        model.text_model.final_layer_norm.bias -= delta.to(projection.dtype)
        after = raw_embeddings()
        after = (after / after.norm(dim=-1, keepdim=True)).mean(dim=0)
    return {"mean_norm_before": float(mean_direction.norm()), "mean_norm_after": float(after.norm()),
            "fit_residual": residual}


__all__ = ["remove_prompt_common_direction"]
