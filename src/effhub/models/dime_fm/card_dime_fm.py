"""`eval_results.json` and the model card of a DIME-FM student, from measured results only."""

from __future__ import annotations

from ...citations import bibtex

DATASET_TYPE = "effhub/caption-world"
DATASET_NAME = "effhub caption world"


def eval_results_from_metrics(metrics: dict) -> dict:
    """The `eval_results.json` contract from `evaluate_side_by_side`'s metrics (the student's figures as results,
    the teacher's and the ratios in `extra`)."""
    from ..clip_teacher.training_clip_teacher import eval_results_from_metrics as clip_results

    student, teacher = metrics["student"], metrics["teacher"]
    results = clip_results({"zero_shot": student["zero_shot"], "retrieval": student["retrieval"]})["results"]
    for result in results:
        if result["task_type"] == "image-text-retrieval":
            result["dataset_split"] = "distillation-test"  # the held-out pairs DIME-FM evaluates on
    results.append({
        "task_type": "image-classification", "task_name": "Linear probe on frozen image features",
        "dataset_type": DATASET_TYPE, "dataset_name": f"{DATASET_NAME} (single object)",
        "dataset_split": "probe-single-test", "metric_type": "accuracy", "metric_name": "Linear-probe accuracy",
        "metric_value": float(student["linear_probe"]["accuracy"]),
    })
    extra = {
        "student_vision_parameters": student["vision_parameters"],
        "teacher_vision_parameters": teacher["vision_parameters"],
        "vision_parameter_ratio": metrics["ratios"]["vision_parameters"],
        "student_text_parameters": student["text_parameters"],
        "text_parameter_ratio": metrics["ratios"]["text_parameters"],
        "zero_shot_accuracy_ratio": metrics["ratios"]["zero_shot_accuracy"],
        "time_per_image_ratio": metrics["ratios"]["seconds_per_image"],
        "teacher_zero_shot_accuracy": teacher["zero_shot"]["accuracy"],
        "teacher_linear_probe_accuracy": teacher["linear_probe"]["accuracy"],
        "teacher_retrieval": teacher["retrieval"],
        "zero_shot_chance": student["zero_shot"]["chance"],
        "side_by_side": metrics,
    }
    return {"model_name": MODEL_NAME, "results": results, "extra": extra}


MODEL_NAME = "effhub-dime-fm"


def _without_machine_paths(training: dict) -> dict:
    """The recipe as the card shows it: a teacher or feature cache given as an absolute path keeps its folder name
    only (a card is published; the path of the machine that trained it means nothing elsewhere)."""
    import os
    from pathlib import Path

    for key in ("teacher", "features"):
        value = training.get(key)
        if isinstance(value, str) and os.path.isabs(value):
            training[key] = Path(value).name
    return training


def write_results_and_card(run_dir, recipe, metrics: dict, model):
    """Write `eval_results.json` and `README.md` (the card) into the run folder."""
    from ...hub.cards import REPO_PLACEHOLDER, write_eval_results, write_model_card
    from ...recipes import recipe_to_dict

    eval_results = eval_results_from_metrics(metrics)
    write_eval_results(run_dir, **eval_results)
    student, teacher = metrics["student"], metrics["teacher"]
    vision = model.config.vision_config
    if model.config.text_tower == "distilled":
        text = model.config.text_config
        text_sentence = (
            f"Its text tower is a smaller one ({text.hidden_size} wide, {text.num_hidden_layers} layers: "
            f"{student['text_parameters']:,} parameters, {metrics['ratios']['text_parameters']:.2f} of the teacher's) "
            "distilled in a second stage with the same losses, the modalities swapped; with the teacher's text tower "
            f"the student's images reach {student['zero_shot_with_teacher_text']['accuracy']:.3f} zero-shot. ")
    else:
        text_sentence = "Its text tower is the teacher's, frozen. "
    card_spec = {
        "template": "default",
        "model_name": MODEL_NAME,
        "library_name": "transformers",
        "license": "apache-2.0",
        "tags": ["clip", "zero-shot-image-classification", "effhub-dime-fm", "distillation", "generated-data"],
        "datasets": [DATASET_TYPE],
        "pipeline_tag": "zero-shot-image-classification",
        "summary": "A DIME-FM student (Sun et al., ICCV 2023): a small CLIP vision tower distilled from the teacher "
        f"`{recipe.teacher}` with unpaired images and texts only (losses: vision-language distillation "
        f"w={recipe.loss.vl}, pseudo vision-language distillation w={recipe.loss.pvl}, unimodal w={recipe.loss.ud}). "
        f"{text_sentence}It has "
        f"{student['vision_parameters']:,} vision parameters ({metrics['ratios']['vision_parameters']:.2f} of the "
        f"teacher's) and reaches {metrics['ratios']['zero_shot_accuracy']:.1%} of the teacher's zero-shot accuracy "
        f"({student['zero_shot']['accuracy']:.3f} vs {teacher['zero_shot']['accuracy']:.3f}). "
        "`effhub export <run> --format clip` writes it as a plain `CLIPModel`.",
        "model_details": {
            "vision parameters": student["vision_parameters"],
            "teacher vision parameters": teacher["vision_parameters"],
            "vision width x layers": f"{vision.hidden_size} x {vision.num_hidden_layers}",
            "text tower": model.config.text_tower,
            "text parameters": student["text_parameters"],
            "patch size": vision.patch_size,
            "joint space": model.config.projection_dim,
            "pooling": model.config.vision_pooling,
            "teacher linear probe": f"{teacher['linear_probe']['accuracy']:.3f}",
            "student linear probe": f"{student['linear_probe']['accuracy']:.3f}",
        },
        "usage": "import effhub\nfrom transformers import pipeline\n"
        f"classifier = pipeline(\"zero-shot-image-classification\", model=\"{REPO_PLACEHOLDER}\")\n"
        "classifier(image, candidate_labels=[\"a red circle\", \"a blue square\"])",
        "training": _without_machine_paths(recipe_to_dict(recipe)),
        "limitations": "Distilled and evaluated only on effhub's generated shapes (64 colour-shape classes); the "
        "student inherits its teacher's limits and knows nothing of natural images.",
        "citation": bibtex("sun2023dimefm", "radford2021clip"),
    }
    return write_model_card(run_dir, card_spec, eval_results)


__all__ = ["MODEL_NAME", "eval_results_from_metrics", "write_results_and_card"]
