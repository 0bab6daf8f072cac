"""`evaluate` module: Delta_T, the relative multi-task improvement over single-task baselines."""

import datasets
import evaluate

from effhub.citations import bibtex
from effhub.errors import ConfigError
from effhub.metrics.multitask_delta.statistics import multitask_delta

_DESCRIPTION = """Delta_T (Maninis et al., CVPR 2019; as used by Sun et al., NeurIPS 2020): for each task the mean
over its metrics of (-1)^l (M_mt - M_st) / M_st (l = 1 when lower is better), averaged over tasks, in percent.
Positive values mean the multi-task model beats the single-task baselines. Each metric's direction must be known
(effhub's own metric names are: `effhub.multitask.LOWER_IS_BETTER`) or declared with `lower_is_better`."""

_CITATION = bibtex("maninis2019attentive", "sun2020adashare")

_INPUTS = """
Args (to compute):
    multi_task: {task: {metric: value}} of the multi-task model.
    single_task: {task: {metric: value}} of the single-task baselines.
    lower_is_better (optional): {metric: bool} or {task: {metric: bool}} for metrics effhub does not know.
Returns:
    delta_t (percent), per_task {task: percent}, per_metric {task: {metric: percent}}.
Example:
    >>> metric = effhub.metrics.load_metric("multitask_delta")
    >>> result = metric.compute(multi_task={"seg": {"mean_iou": 0.44}}, single_task={"seg": {"mean_iou": 0.40}})
    >>> round(result["delta_t"], 6)
    10.0
"""


class MultitaskDelta(evaluate.Metric):
    """Delta_T from per-task metric dicts (no per-batch state: it combines final metric values)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Not used: Delta_T combines final metric values; call compute(multi_task=..., single_task=...)."""
        raise ConfigError(
            "multitask_delta takes no batches",
            "call compute(multi_task={task: {metric: value}}, single_task={task: {metric: value}})",
        )

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Not used: see add_batch."""
        self.add_batch()

    def compute(self, *, predictions=None, references=None, **kwargs):
        """Delta_T of `multi_task` against `single_task` (see the module description)."""
        multi_task = kwargs.pop("multi_task", predictions)
        single_task = kwargs.pop("single_task", references)
        if multi_task is None or single_task is None:
            raise ConfigError(
                "multitask_delta needs multi_task and single_task metric dicts",
                "call compute(multi_task={task: {metric: value}}, single_task={task: {metric: value}})",
            )
        return multitask_delta(multi_task, single_task, kwargs.pop("lower_is_better", None))

    def _compute(self, predictions=None, references=None, **kwargs):
        return self.compute(predictions=predictions, references=references, **kwargs)
