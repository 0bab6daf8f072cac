"""Shared phased-training infrastructure: every effhub method trains through `PhasedTrainer`.

A method hands the trainer its `Phase`s (each a list of `Update`s: data, loss, trainable parameters, optimiser,
schedule); the trainer runs them under one `accelerate.Accelerator` with gradient accumulation, mixed precision,
DDP that tolerates parameters unused in a pass, JSON-lines and Accelerate trackers, progress bars, `run_info.json`,
atomic checkpoints and exact resume. Nothing here knows any method.
"""

from .arguments import Phase, TrainingArguments, Update
from .checkpoints import CHECKPOINTS_DIR, TRAINER_STATE_FILE, checkpoint_dirs, latest_checkpoint, read_trainer_state
from .run_info import RUN_INFO_FILE, collect_run_info, package_versions
from .sampling import DataStream, ShardedEpochBatchSampler
from .tracking import METRICS_FILE, JsonlTracker, read_metrics_log
from .trainer import LOGS_DIR, PhasedTrainer, StepContext, end_ranks_cleanly, finish_distributed

__all__ = [
    "TrainingArguments",
    "Phase",
    "Update",
    "StepContext",
    "PhasedTrainer",
    "end_ranks_cleanly",
    "finish_distributed",
    "JsonlTracker",
    "read_metrics_log",
    "DataStream",
    "ShardedEpochBatchSampler",
    "latest_checkpoint",
    "checkpoint_dirs",
    "read_trainer_state",
    "collect_run_info",
    "package_versions",
    "CHECKPOINTS_DIR",
    "TRAINER_STATE_FILE",
    "RUN_INFO_FILE",
    "METRICS_FILE",
    "LOGS_DIR",
]
