"""effhub's run layer: every method trains through it, and nothing here knows any method.

- `RunOptions` (`options`): what a run is asked to do; `effhub.cli` builds it from flags, code builds it directly.
- `RunLayout` (`layout`): the run folder's file names, in one place.
- `Run` (`run`): a sequence of named stages on one `Accelerator`; finished stages are recorded, so a resumed run
  skips them and continues the interrupted one from its latest checkpoint.
- `Phase` / `Update` (`phases`) and `PhasedTrainer` (`trainer`): a stage's phases of alternating, partly frozen
  updates over one or several data streams, with accumulation, DDP, logging, atomic checkpoints and exact resume.
- `evaluate`, `export_features`, `load_features` (`evaluation`): streaming a dataset through a model on every
  process without a trainer.

Importing this package is light: each name is imported from its module (torch, accelerate) on first use.
"""

from __future__ import annotations

from ..lazy import lazy_attributes

_LAZY = {
    "RunOptions": "options",
    "EvalOptions": "options",
    "ConvertOptions": "options",
    "DemoOptions": "options",
    "MIXED_PRECISION_CHOICES": "options",
    "RunLayout": "layout",
    "RUN_INFO_FILE": "layout",
    "EVAL_RESULTS_FILE": "layout",
    "CHECKPOINTS_DIR": "layout",
    "LOGS_DIR": "layout",
    "METRICS_LOG_FILE": "layout",
    "TRAINER_STATE_FILE": "layout",
    "Phase": "phases",
    "Update": "phases",
    "Run": "run",
    "StageResult": "run",
    "save_model_atomically": "run",
    "PhasedTrainer": "trainer",
    "StepContext": "trainer",
    "evaluate": "evaluation",
    "export_features": "evaluation",
    "load_features": "evaluation",
    "JsonlTracker": "tracking",
    "read_metrics_log": "tracking",
    "DataStream": "sampling",
    "ShardedEpochBatchSampler": "sampling",
    "latest_checkpoint": "checkpoints",
    "checkpoint_dirs": "checkpoints",
    "read_trainer_state": "checkpoints",
    "collect_run_info": "run_info",
    "package_versions": "run_info",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
