"""The run folder's layout: every file name of a run, in one place.

```
<run>/                       the model folder: what `push` uploads and `from_pretrained` reads
  config.json, model.safetensors, preprocessor_config.json, ...
  README.md                  the model card          card_spec.json   what the card was built from
  eval_results.json          measured results        run_info.json    versions, seed, recipe, world size, resumes
  <method files>             e.g. a split record (named by the method, written through `artifact`)
  logs/metrics.jsonl         one JSON record per optimizer step over all stages (+ tracker folders)
  checkpoints/               never pushed
    stages.json              finished stages: steps, trainer state, recorded outputs
    <stage>/checkpoint-N/    resumable checkpoints of a stage (step N of the whole run)
    <stage>/model.safetensors the stage's final weights (a resumed run skips the stage and loads them)
    <stage>/<files>          what the method keeps of a stage (`stage_path`)
```
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError

RUN_INFO_FILE = "run_info.json"
EVAL_RESULTS_FILE = "eval_results.json"
CARD_FILE = "README.md"
CARD_SPEC_FILE = "card_spec.json"
LOGS_DIR = "logs"
METRICS_LOG_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
STAGES_FILE = "stages.json"
STAGE_WEIGHTS_FILE = "model.safetensors"
TRAINER_STATE_FILE = "trainer_state.json"
STAGES_FORMAT = 1
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def read_json_record(path: Path, fix: str) -> Any:
    """The JSON in `path`; a `CheckpointError` naming the file (with `fix`) when it cannot be read or parsed.

    A missing file raises `FileNotFoundError`, for the caller to name what is missing."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"'{path}' cannot be read ({error})", fix) from None


def check_stage_name(name: str) -> str:
    """Return `name` when it can name a stage folder, else raise `ConfigError`."""
    if not isinstance(name, str) or not _STAGE_NAME.match(name):
        raise ConfigError(f"stage name {name!r} cannot name a folder",
                              "use letters, digits, '.', '_' or '-' (at most 64 characters)")
    return name


class RunLayout:
    """Paths of one run folder (see the module docstring for the tree)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def run_info(self) -> Path:
        return self.root / RUN_INFO_FILE

    @property
    def eval_results(self) -> Path:
        return self.root / EVAL_RESULTS_FILE

    @property
    def card(self) -> Path:
        return self.root / CARD_FILE

    @property
    def logs(self) -> Path:
        return self.root / LOGS_DIR

    @property
    def metrics_log(self) -> Path:
        return self.logs / METRICS_LOG_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def stages_file(self) -> Path:
        return self.checkpoints / STAGES_FILE

    def stage_dir(self, stage: str) -> Path:
        """The folder of `stage`: its checkpoints, final weights and kept files."""
        return self.checkpoints / check_stage_name(stage)

    def stage_weights(self, stage: str) -> Path:
        return self.stage_dir(stage) / STAGE_WEIGHTS_FILE

    def stage_path(self, stage: str, name: str) -> Path:
        """A file the method keeps with `stage` (never pushed)."""
        return self.stage_dir(stage) / name

    def private(self, name: str) -> Path:
        """A method's own run-wide file that is never pushed (under `checkpoints/`), e.g. initial weights."""
        return self.checkpoints / name

    def artifact(self, name: str) -> Path:
        """A method's own file in the model folder (pushed with the model), e.g. `splits.json`."""
        return self.root / name

    def read_run_info(self) -> dict[str, Any]:
        """`run_info.json` as a dict; `CheckpointError` naming the folder when it is missing or unreadable."""
        try:
            return read_json_record(self.run_info, "restore the file or train the run again")
        except FileNotFoundError:
            raise CheckpointError(f"'{self.root}' has no {RUN_INFO_FILE}",
                                  "pass a run folder written by `effhub train` (or --method)") from None

    def read_recipe(self, recipe_class: type):
        """The run's recipe from `run_info.json`, built as `recipe_class`; `ConfigError` when the run has none."""
        from ..recipes import build_dataclass

        info = self.read_run_info()
        if not info.get("recipe"):
            raise ConfigError(f"'{self.root}' has no recipe in {RUN_INFO_FILE}",
                              "pass a run folder written by effhub train")
        return build_dataclass(recipe_class, info["recipe"])

    def read_stages(self) -> dict[str, Any]:
        """The finished-stage record (`{}` when there is none)."""
        path = self.stages_file
        if not path.is_file():
            return {}
        data = read_json_record(path, "delete it to train every stage again, or train into a fresh --output-dir")
        if not isinstance(data, dict) or data.get("format") != STAGES_FORMAT:
            raise CheckpointError(f"'{path}' is not a stage record of format {STAGES_FORMAT}",
                                  "train into a fresh --output-dir")
        return data.get("stages", {})

    def write_stages(self, stages: dict[str, Any]) -> None:
        from ..atomic import atomic_write_json

        atomic_write_json(self.stages_file, {"format": STAGES_FORMAT, "stages": stages})


__all__ = ["RunLayout", "check_stage_name", "read_json_record", "RUN_INFO_FILE", "EVAL_RESULTS_FILE", "CARD_FILE", "CARD_SPEC_FILE",
           "LOGS_DIR", "METRICS_LOG_FILE", "CHECKPOINTS_DIR", "STAGES_FILE", "STAGE_WEIGHTS_FILE",
           "TRAINER_STATE_FILE"]
