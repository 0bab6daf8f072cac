"""AdaShare's evaluation JSON and model card: measured test metrics, parameter counts, the per-task policy (table and
heatmap), the fraction of multiply-adds each task executes, and the recipe (Sun et al., NeurIPS 2020)."""

from __future__ import annotations

from pathlib import Path

from ...citations import bibtex
from ...costs import executed_fraction
from ...multitask import TASK_TYPE_METRICS
from ...registry import get_method

DATASET_NAMES = {"scenes": ("effhub/scenes", "effhub generated multi-task scenes"), "nyuv2": ("nyu_v2", "NYU-v2"),
                 "cityscapes": ("cityscapes", "CityScapes"), "taskonomy": ("taskonomy", "Tiny-Taskonomy")}


def eval_results_from_scores(config, dataset: str, scores: dict, split: str = "test", extra: dict | None = None):
    """The evaluation JSON (`effhub.hub.cards` contract) of `{task: {metric: value}}` test scores."""
    dataset_type, dataset_name = DATASET_NAMES.get(dataset, (dataset, dataset))
    results = []
    for task in config.task_names:
        kind = TASK_TYPE_METRICS[config.task_types[task]]
        hub_task = kind.hub_task
        for metric, metric_name in kind.card.items():
            if metric in scores.get(task, {}):
                results.append({"task_type": hub_task, "task_name": task, "dataset_type": dataset_type,
                                "dataset_name": dataset_name, "dataset_split": split, "metric_type": metric,
                                "metric_name": f"{task} {metric_name}", "metric_value": float(scores[task][metric])})
    return {"model_name": "adashare", "results": results, "extra": {"scores": scores, **(extra or {})}}


def executed_fractions(model, image_size) -> dict[str, float]:
    """Per task, the fraction of the all-blocks multiply-adds (backbone + its head) its policy executes."""
    return {task: executed_fraction(model.multiply_adds(tuple(image_size), task),
                                    model.multiply_adds(tuple(image_size), task, policy_mode="shared"))
            for task in model.config.task_names}


def write_adashare_card(run_dir, model, recipe, eval_results: dict, image_size) -> Path:
    """Write the run's `eval_results.json`, policy heatmap and `README.md` card."""
    import numpy as np

    from ...hub.cards import save_heatmap, write_model_card
    from ...recipes import recipe_to_dict

    run_dir = Path(run_dir)
    config = model.config
    policy = {task: [int(v) for v in model.execution_plan(task)] for task in config.task_names}
    heatmap = save_heatmap(run_dir / "images" / "policy.png", np.array([policy[t] for t in config.task_names]),
                           row_labels=config.task_names,
                           col_labels=[str(block + 1) for block in range(config.num_blocks)],
                           title="Executed residual blocks per task (1 = select, 0 = skip)")
    counts = model.count_parameters()
    fractions = eval_results["extra"].get("executed_fraction") or executed_fractions(model, image_size)
    card_spec = {
        "template": "effhub.models.adashare:card_template.md",
        "model_name": "adashare",
        "license": "mit",
        "tags": ["multi-task-learning", "adashare", "dense-prediction"],
        "datasets": [DATASET_NAMES.get(recipe.dataset, (recipe.dataset,))[0]],
        "pipeline_tag": "image-segmentation" if config.segmentation_task else None,
        "images": {"policy": str(heatmap)},
        "summary": (f"AdaShare (Sun et al., NeurIPS 2020) trained by effhub on "
                    f"{DATASET_NAMES.get(recipe.dataset, (None, recipe.dataset))[1]}: one dilated ResNet-"
                    f"{config.backbone_depth} backbone shared by {len(config.task_names)} tasks "
                    f"({', '.join(config.task_names)}); each task executes only the residual blocks its learned "
                    f"policy selects."),
        "model_details": {
            "backbone": f"dilated ResNet-{config.backbone_depth}, base width {config.base_width}, output stride 8",
            "backbone parameters": counts["backbone"],
            "head parameters (all tasks)": counts["heads"],
            "policy logits": counts["policy"],
            "policy-able blocks": config.num_blocks,
            "heads": config.head_type,
        },
        "delta_t": {name: eval_results["extra"][key] for name, key in (
            ("AdaShare (this model)", "delta_t"), ("hard sharing (warm-up model)", "delta_t_warmup_hard_sharing"))
            if key in eval_results["extra"]},
        "policy": policy,
        "executed_fraction": fractions,
        "usage": ("import effhub\nfrom transformers import AutoModel\n"
                  "model = AutoModel.from_pretrained(\"<repo or folder>\")\n"
                  "out = model(pixel_values)                        # every task: out.logits is {task: tensor}\n"
                  f"seg = model(pixel_values, task=\"{config.task_names[0]}\")  # runs only this task's blocks"),
        "training": recipe_to_dict(recipe),
        "limitations": ("Measured on the data set and split named in the results only. Multiply-add fractions count "
                        "convolutions (backbone plus the task's head) for one image at the training resolution."),
        "citation": bibtex(*get_method("adashare").papers),
    }
    return write_model_card(run_dir, card_spec, eval_results)


__all__ = ["eval_results_from_scores", "executed_fractions", "write_adashare_card"]
