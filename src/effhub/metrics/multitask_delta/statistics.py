"""Delta_T: the relative multi-task improvement over single-task baselines (Maninis et al., CVPR 2019; the form
used by Sun et al., NeurIPS 2020).

For task t with metrics j = 1..|M_t|:  Delta_t = 100 / |M_t| * sum_j (-1)^{l_j} (M_mt,j - M_st,j) / M_st,j,
with l_j = 1 when lower is better; Delta_T is the mean of Delta_t over tasks, in percent (positive = the multi-task
model is better).
"""

from __future__ import annotations

from collections.abc import Mapping

from ...errors import ConfigError
from ...multitask import LOWER_IS_BETTER

def multitask_delta(
    multi_task: Mapping[str, Mapping[str, float]],
    single_task: Mapping[str, Mapping[str, float]],
    lower_is_better: Mapping[str, bool] | Mapping[str, Mapping[str, bool]] | None = None,
) -> dict[str, object]:
    """Delta_T of a multi-task model against single-task references.

    Args:
        multi_task: `{task: {metric: value}}` of the multi-task model; every metric listed is used.
        single_task: the same for the single-task baselines; must hold every (task, metric) of `multi_task`.
        lower_is_better: each metric's direction, `{metric: bool}` or `{task: {metric: bool}}`; metrics not given
            fall back to `effhub.multitask.LOWER_IS_BETTER`; a metric with no declared direction is an error.

    Returns:
        `{"delta_t": percent, "per_task": {task: percent}, "per_metric": {task: {metric: percent}}}`.
    """
    if not multi_task:
        raise ConfigError("multitask_delta got no tasks", "pass {task: {metric: value}} for the multi-task model")
    lower_is_better = lower_is_better or {}
    per_metric: dict[str, dict[str, float]] = {}
    for task, metrics in multi_task.items():
        if task not in single_task:
            raise ConfigError(
                f"task '{task}' has no single-task reference (references cover {sorted(single_task)})",
                "pass single-task values for every task of the multi-task model",
            )
        if not metrics:
            raise ConfigError(f"task '{task}' lists no metric", "pass at least one metric value per task")
        task_directions = lower_is_better.get(task) if isinstance(lower_is_better.get(task), Mapping) else {}
        per_metric[task] = {}
        for metric, value in metrics.items():
            if metric not in single_task[task]:
                raise ConfigError(
                    f"metric '{metric}' of task '{task}' has no single-task reference",
                    f"add single_task['{task}']['{metric}']",
                )
            if metric in task_directions:
                lower = task_directions[metric]
            elif isinstance(lower_is_better.get(metric), bool):
                lower = lower_is_better[metric]
            elif metric in LOWER_IS_BETTER:
                lower = LOWER_IS_BETTER[metric]
            else:
                raise ConfigError(
                    f"the direction of metric '{metric}' (task '{task}') is not declared",
                    f"pass lower_is_better={{'{metric}': True or False}}",
                )
            reference = float(single_task[task][metric])
            if reference == 0:
                raise ConfigError(
                    f"the single-task reference of '{task}/{metric}' is 0, so a relative change is undefined",
                    "leave this metric out of Delta_T or use a non-zero reference",
                )
            sign = -1.0 if lower else 1.0
            per_metric[task][metric] = 100.0 * sign * (float(value) - reference) / reference
    per_task = {task: sum(values.values()) / len(values) for task, values in per_metric.items()}
    return {"delta_t": sum(per_task.values()) / len(per_task), "per_task": per_task, "per_metric": per_metric}


__all__ = ["multitask_delta"]
