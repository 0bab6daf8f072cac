"""The evaluation JSON and adapter card of a DualCoOp run: base model (never lost), classes, label ratio, trainable
parameters against the CLIP's, the scale constants' source, and the measured mAP and F1 (Sun et al., NeurIPS 2022)."""

from __future__ import annotations

from pathlib import Path

from ...citations import bibtex
from ...registry import get_method
from .config import SHIPPED_TEACHER_PREFIX

DATASET_NAMES = {"caption-world": ("effhub/caption-world", "effhub caption world (multi-label)"),
                 "voc2007": ("voc2007", "PASCAL VOC2007"), "coco2014": ("coco2014", "MS-COCO 2014")}
# the repo id under which `effhub demo dualcoop` publishes the shipped teacher on its local hub
SHIPPED_TEACHER_REPO = "effhub/clip-teacher-base"
CARD_METRICS = (("map", "mAP"), ("of1_top{k}", "OF1@{k}"), ("cf1_top{k}", "CF1@{k}"), ("of1", "OF1@0.5"))


def eval_results_from_outputs(outputs: dict, dataset: str, top_k: int, extra: dict | None = None) -> dict:
    """The `eval_results.json` contract of `evaluate_adapter`'s outputs (values in percent)."""
    dataset_type, dataset_name = DATASET_NAMES.get(dataset, (dataset, dataset))
    results = []
    for part, scores in outputs.items():
        for key, label in CARD_METRICS:
            key, label = key.format(k=top_k), label.format(k=top_k)
            if key in scores:
                results.append({"task_type": "multi-label-image-classification",
                                "task_name": {"test": "Multi-label recognition", "zsl": "Zero-shot multi-label (ZSL)",
                                              "gzsl": "Generalised zero-shot multi-label (GZSL)"}.get(part, part),
                                "dataset_type": dataset_type, "dataset_name": dataset_name, "dataset_split": "test",
                                "metric_type": key, "metric_name": f"{label} ({part})",
                                "metric_value": float(scores[key])})
    return {"model_name": "dualcoop", "results": results, "extra": {"scores": outputs, **(extra or {})}}


def base_model_id(reference: str) -> str:
    """The card's `base_model`: a Hub repo id, or the shipped teacher's published id."""
    if reference.startswith(SHIPPED_TEACHER_PREFIX):
        return SHIPPED_TEACHER_REPO
    return reference


def write_dualcoop_card(run_dir, model, recipe, outputs: dict, ratio: float, data) -> Path:
    """Write `eval_results.json` and the adapter card (`README.md`, replacing PEFT's) into the run folder."""
    from ...hub.cards import REPO_PLACEHOLDER, write_model_card
    from ...recipes import recipe_to_dict

    config = model.peft_config["default"]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) or sum(
        p.numel() for name, p in model.named_parameters() if "dualcoop_ctx" in name)
    total = sum(p.numel() for p in model.parameters())
    base = recipe.model.base_model
    extra = {"label_ratio": ratio, "trainable_parameters": trainable, "clip_parameters": total - trainable,
             "base_model": base, "class_names": list(config.class_names),
             "unseen_classes": list(data.unseen_classes)}
    eval_results = eval_results_from_outputs(outputs, recipe.data.dataset, recipe.train.top_k, extra)
    repo = REPO_PLACEHOLDER
    card_spec = {
        "template": "effhub.adapters.dualcoop:card_template.md",
        "model_name": "dualcoop",
        "library_name": "peft",
        "license": "mit",
        "base_model": base_model_id(base),
        "tags": ["dualcoop", "peft", "clip", "multi-label-image-classification", "prompt-learning",
                 "base_model:adapter:" + base_model_id(base)],
        "datasets": [DATASET_NAMES.get(recipe.data.dataset, (recipe.data.dataset,))[0]],
        "summary": (f"A DualCoOp adapter (Sun, Hu and Saenko, NeurIPS 2022) trained by effhub: positive and negative "
                    f"prompt contexts on a frozen CLIP (`{base}`) for multi-label recognition of "
                    f"{len(config.class_names)} classes with {ratio:.0%} of the training labels "
                    f"({recipe.data.setting} setting)."),
        "model_details": {
            "base model": f"{base}" + (" (the CLIP teacher shipped inside effhub)"
                                       if base.startswith(SHIPPED_TEACHER_PREFIX) else ""),
            "trainable parameters": trainable,
            "base CLIP parameters": total - trainable,
            "trainable fraction": f"{trainable / max(total - trainable, 1):.4%}",
            "contexts (positive / negative)": f"{config.n_ctx} / {config.num_ctx_neg}"
                                              + (", class-specific" if config.class_specific else ", shared"),
            "label ratio": ratio,
            "setting": recipe.data.setting,
            "classes": len(config.class_names),
            "dense features": {"values": "MaskCLIP value path",
                               "class_values": "class-token path with each patch's value", "tokens": "patch tokens",
                               "global": "pooled embedding (no spatial aggregation)"}
                              .get(config.dense_mode, config.dense_mode),
            "negative prompt": {"class": "one per class (the paper)", "shared": "shared, without class name",
                                "image_threshold": "none: the image's log-mean-exp positive logit over the classes"}
                               .get(getattr(config, "negative_prompt", "class"), config.negative_prompt),
            "logit offset": f"{getattr(config, 'logit_offset', 0.0):.4g}",
            "scale constants": f"spatial temperature {config.region_temperature:.4g}, logit scale "
                               f"{config.logit_scale:.4g} ({config.scale_source})",
            "input size (train / eval)": f"{recipe.data.train_image_size} / {recipe.data.eval_image_size}",
        },
        "class_names": list(config.class_names),
        "unseen_classes": list(data.unseen_classes),
        "usage": ("import effhub  # registers the EFFHUB_DUALCOOP PEFT type: without it PEFT fails with "
                  "KeyError: 'EFFHUB_DUALCOOP'\n"
                  "from peft import PeftModel\nfrom transformers import CLIPModel\n\n"
                  + (("from effhub.models.clip_teacher.weights import load_base_teacher\n"
                      "clip, processor = load_base_teacher()\n") if base.startswith(SHIPPED_TEACHER_PREFIX)
                     else f"clip = CLIPModel.from_pretrained(\"{base}\")\n")
                  + f"model = PeftModel.from_pretrained(clip, \"{repo}\")\n"
                  "out = model(pixel_values=pixel_values)            # out.logits [B, 2, C], out.probs [B, C]\n"
                  "out = model(pixel_values=pixel_values, class_names=[\"a new class\"])   # zero-shot"),
        "training": recipe_to_dict(recipe),
        "limitations": ("Measured on the data set and split named in the results only. "
                        + ("The base model is effhub's small CLIP teacher trained on generated shapes: its figures "
                           "say nothing about natural images. " if base.startswith(SHIPPED_TEACHER_PREFIX) else "")
                        + "Class-specific contexts cannot score classes outside the training list."),
        "citation": bibtex(*get_method("dualcoop").papers),
    }
    return write_model_card(run_dir, card_spec, eval_results)


__all__ = ["eval_results_from_outputs", "write_dualcoop_card", "base_model_id", "SHIPPED_TEACHER_REPO"]
