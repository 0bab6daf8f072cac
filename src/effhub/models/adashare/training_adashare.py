"""AdaShare's three training phases on effhub's `PhasedTrainer` (Sun et al., NeurIPS 2020, Sec. 3.3; phase lengths,
optimisers and losses as in the authors' `train.py` / `re-train.py` / `envs/blockdrop_env.py`).

1. **warm-up**: every block executes (hard sharing); Adam(0.5, 0.999) on all network weights, StepLR.
2. **policy learning**: weight updates on `train1` (SGD momentum 0.9, constant LR, Gumbel-softmax policy samples)
   interleaved with policy updates on `train2` (Adam on the select/skip logits; task + sparsity + sharing losses).
   After each policy epoch the Gumbel temperature is multiplied by `gumbel_tau_decay` and the curriculum makes one
   more block (from the deepest up) learnable every `curriculum_speed` epochs. The authors alternate whole passes over
   train1 and train2; here the two updates are interleaved step by step in the same ratio (one pass each per epoch).
3. **re-training**: `retrain_samples` hard architectures are sampled from the learned logits (`architecture:
   sample`, the paper), the most likely one is taken (`architecture: argmax`), or the most likely one and
   `retrain_samples - 1` distinct samples (`architecture: argmax_and_samples`); each is trained from the saved
   *initial* weights on train1+train2 (Adam, StepLR) and the best on the validation split is kept, by the selection
   score normalised per task by the single-task references' validation scores (trained first when the recipe has
   them), else by the warm-up model's.

The validation split is carved (seeded) from the training set and saved with the run (`splits.json`); no decision
looks at the test split.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import torch

from ...atomic import atomic_save_safetensors, atomic_write_json, atomic_write_text
from ...data.dense.schema import dataset_ids
from ... import multitask
from ...errors import ConfigError, DatasetError
from ...multitask import scores_from_statistics, selection_score, task_statistics
from .card_adashare import eval_results_from_scores, executed_fractions
from .recipe_adashare import AdaShareRecipe

# the method's own files (paths through the run's `RunLayout`): pushed with the model ...
SPLITS_FILE = "splits.json"
SINGLE_TASK_FILE = "single_task_references.json"
CANDIDATES_FILE = "retrain_candidates.json"
# ... and kept with the run only
INITIAL_WEIGHTS_FILE = "initial_weights.safetensors"
WARMUP_WEIGHTS_FILE = "warmup.safetensors"
# the run's stages
POLICY_STAGE = "policy"



# -- data ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitIds:
    """The image ids of AdaShare's three training subsets, carved from one training set.

    Weights are trained on `train1`, the policy on `train2` (Sun et al., NeurIPS 2020, Sec. 3.3), and `val` serves
    model selection, so that no decision looks at the test split. Saved with a run as JSON.

    Args:
        train1 (`tuple[str, ...]`): ids of the weight-update subset.
        train2 (`tuple[str, ...]`): ids of the policy-update subset (disjoint from `train1`).
        val (`tuple[str, ...]`): ids of the validation subset (disjoint from both).
        val_fraction (`float`): the fraction of the training set carved out for validation.
        seed (`int`): the seed of the permutation.
    """

    train1: tuple[str, ...]
    train2: tuple[str, ...]
    val: tuple[str, ...]
    val_fraction: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "train1": list(self.train1),
            "train2": list(self.train2),
            "val": list(self.val),
            "val_fraction": self.val_fraction,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> SplitIds:
        missing = {"train1", "train2", "val", "val_fraction", "seed"} - set(mapping)
        if missing:
            raise DatasetError(f"Split record lacks {sorted(missing)}", "save it with `SplitIds.save`")
        return cls(
            train1=tuple(mapping["train1"]),
            train2=tuple(mapping["train2"]),
            val=tuple(mapping["val"]),
            val_fraction=float(mapping["val_fraction"]),
            seed=int(mapping["seed"]),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the split as JSON, atomically (temporary file in the same folder, then `os.replace`)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> SplitIds:
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"Split file '{path}' does not exist", "pass the split.json saved with the run")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except ValueError as error:
            raise DatasetError(f"Split file '{path}' is not valid JSON ({error})", "re-create it") from error

    def select(self, dataset) -> tuple[Any, Any, Any]:
        """Return the (train1, train2, val) subsets of `dataset` (which must hold every id of this split)."""
        position = {identifier: index for index, identifier in enumerate(dataset_ids(dataset))}
        subsets = []
        for name in ("train1", "train2", "val"):
            wanted = getattr(self, name)
            missing = [identifier for identifier in wanted if identifier not in position]
            if missing:
                raise DatasetError(
                    f"The data set lacks {len(missing)} id(s) of the saved '{name}' split (e.g. {missing[:3]})",
                    "select from the same training set the split was made from",
                )
            subsets.append(dataset.select([position[identifier] for identifier in wanted]))
        return subsets[0], subsets[1], subsets[2]


def split_ids(dataset_or_ids, val_fraction: float = 0.1, seed: int = 0) -> SplitIds:
    """Carve a seeded validation set out of a training set and halve the rest into disjoint `train1` / `train2`.

    The ids are sorted before the seeded permutation, so the split depends on the set of ids and the seed only, not on
    the order of the rows. The AdaShare authors do not say how their train1/train2 were cut (their issues #7 and #15);
    a random disjoint halving is the natural reading of the paper.

    Args:
        dataset_or_ids: a data set with an `id` column, or a sequence of ids.
        val_fraction (`float`, defaults to 0.1): share of the ids kept for validation, in [0, 1).
        seed (`int`, defaults to 0): seed of the permutation.
    """
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction={val_fraction} is outside [0, 1)", "pass a fraction such as 0.1")
    ids = sorted(dataset_ids(dataset_or_ids))
    if len(set(ids)) != len(ids):
        raise DatasetError("The data set's ids are not unique", "give every sample a distinct id")
    if len(ids) < 2 + (val_fraction > 0):
        raise DatasetError(
            f"Cannot split {len(ids)} sample(s) into train1/train2" + ("/val" if val_fraction > 0 else ""),
            "use a training set with at least 3 samples",
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[index] for index in order]
    num_val = int(round(val_fraction * len(ids)))
    if val_fraction > 0:
        num_val = min(max(num_val, 1), len(ids) - 2)
    rest = shuffled[num_val:]
    half = (len(rest) + 1) // 2
    return SplitIds(
        train1=tuple(rest[:half]),
        train2=tuple(rest[half:]),
        val=tuple(shuffled[:num_val]),
        val_fraction=float(val_fraction),
        seed=int(seed),
    )


def split_train(dataset, val_fraction: float = 0.1, seed: int = 0):
    """The (train1, train2, val) subsets of `dataset`: `split_ids(dataset, val_fraction, seed).select(dataset)`."""
    return split_ids(dataset, val_fraction, seed).select(dataset)


def load_datasets(recipe: AdaShareRecipe, data_dir=None):
    """(train, test) `datasets.Dataset`s of the recipe's data set."""
    from ...data import load_dataset

    options = dict(recipe.dataset_options)
    return (load_dataset(recipe.dataset, "train", root=data_dir, kind="dense", **options),
            load_dataset(recipe.dataset, "test", root=data_dir, kind="dense", **options))


def make_collator(recipe: AdaShareRecipe, tasks, train: bool):
    """The dense collator of `tasks`, normalising pixels with the run's image processor (random scale/flip/crop when
    `train` and the recipe augments)."""
    from ...data.dense.augmentation import DenseAugmentation
    from ...data.dense.collator import DenseCollator

    augmentation = None
    if train and recipe.augment and recipe.crop_size:
        augmentation = DenseAugmentation(crop_size=tuple(recipe.crop_size))
    return DenseCollator(list(tasks), normalize=make_processor(recipe).normalize_pixels, augmentation=augmentation)


def make_processor(recipe: AdaShareRecipe, image_size=None):
    """The run's image processor: the one place pixels are normalised (`image_size` (height, width) sets its resize
    size; the processor's default otherwise)."""
    from .image_processing_pil_adashare import AdaShareImageProcessorPil

    size = None if image_size is None else {"height": int(image_size[0]), "width": int(image_size[1])}
    if recipe.input_convention == "caffe_bgr":
        return AdaShareImageProcessorPil.for_authors_checkpoint(size=size)
    return AdaShareImageProcessorPil(**({} if size is None else {"size": size}))


# -- parameter groups and optimisers ---------------------------------------------------------------------------------
def network_parameters(model):
    return [p for name, p in model.named_parameters() if not name.startswith("policy.")]


def policy_parameters(model):
    return list(model.policy.parameters())


def _param_groups(params, model, recipe):
    head_ids = {id(p) for p in model.heads.parameters()}
    heads = [p for p in params if id(p) in head_ids]
    backbone = [p for p in params if id(p) not in head_ids]
    return [{"params": heads, "lr": recipe.lr}, {"params": backbone, "lr": recipe.backbone_lr}]


def _step_lr(recipe):
    return lambda optimizer, total: torch.optim.lr_scheduler.StepLR(optimizer, recipe.lr_decay_steps,
                                                                     recipe.lr_decay_rate)


def policy_epoch_lengths(recipe: AdaShareRecipe, len_train1: int, len_train2: int, world_size: int = 1):
    """Weight and policy steps per policy epoch (0 in the recipe: one pass over train1 / train2)."""
    per_step = recipe.batch_size * world_size
    weights = recipe.weight_steps_per_epoch or max(1, math.ceil(len_train1 / per_step))
    policy = recipe.policy_steps_per_epoch or max(1, math.ceil(len_train2 / per_step))
    return weights, policy


# policy epochs the curriculum must leave with every block learnable
CURRICULUM_SPARE_EPOCHS = 2


def check_curriculum(recipe: AdaShareRecipe, num_blocks: int) -> None:
    """Refuse a recipe whose curriculum does not make every block learnable with `CURRICULUM_SPARE_EPOCHS` epochs to
    spare (blocks never made learnable would keep their initial logits and be decided by chance)."""
    complete = (num_blocks - 1) * recipe.curriculum_speed  # the first policy epoch with every block learnable
    needed = complete + CURRICULUM_SPARE_EPOCHS
    if recipe.policy_epochs < needed:
        raise ConfigError(
            f"the curriculum makes all {num_blocks} blocks learnable only in policy epoch {complete} "
            f"(curriculum_speed={recipe.curriculum_speed}), but policy_epochs={recipe.policy_epochs} leaves fewer than "
            f"{CURRICULUM_SPARE_EPOCHS} epochs with every block learnable",
            f"set policy_epochs >= {needed} or curriculum_speed <= "
            f"{max(1, (recipe.policy_epochs - CURRICULUM_SPARE_EPOCHS) // max(num_blocks - 1, 1))}",
        )


def segmentation_class_weights(recipe: AdaShareRecipe, config, train_data) -> dict[str, list[float]] | None:
    """The recipe's class-balanced segmentation weights, counted on `train_data` (None unless `balanced`)."""
    if recipe.segmentation_class_weighting != "balanced":
        return None
    weights = {}
    for task, kind in config.task_types.items():
        if kind == "segmentation":
            weights[task] = multitask.balanced_class_weights(
                (np.asarray(row) for row in train_data[task]), config.tasks[task], config.ignore_index,
                recipe.class_weight_power)
    return weights or None


def num_train_blocks(policy_epoch: int, curriculum_speed: int) -> int:
    """Curriculum: blocks (from the deepest) that use the learned policy in policy epoch `policy_epoch`."""
    return policy_epoch // curriculum_speed + 1


# -- losses ----------------------------------------------------------------------------------------------------------
def _task_loss(model, batch, **kwargs):
    output = model(batch["pixel_values"], labels=batch["labels"], label_mask=batch.get("label_mask"), **kwargs)
    logs = {f"loss_{task}": value.detach() for task, value in output.task_losses.items()}
    return output.loss, logs


def warmup_loss(model, batch, ctx):
    loss, logs = _task_loss(model, batch, policy_mode="shared")
    return {"loss": loss, **logs}


def weight_loss(model, batch, ctx):
    blocks = num_train_blocks(ctx.state["policy_epoch"], ctx.unwrapped_model.config.curriculum_speed)
    loss, logs = _task_loss(model, batch, policy_mode="gumbel", temperature=ctx.state["temperature"],
                            num_train_blocks=blocks)
    return {"loss": loss, **logs}


def policy_loss(model, batch, ctx):
    unwrapped = ctx.unwrapped_model
    config = unwrapped.config
    blocks = num_train_blocks(ctx.state["policy_epoch"], config.curriculum_speed)
    task, logs = _task_loss(model, batch, policy_mode="gumbel", temperature=ctx.state["temperature"],
                            num_train_blocks=blocks)
    sparsity = unwrapped.sparsity_loss(blocks)
    sharing = unwrapped.sharing_loss()
    loss = task + config.reg_w_sparsity * sparsity + config.reg_w_sharing * sharing
    return {"loss": loss, "sparsity": sparsity.detach(), "sharing": sharing.detach(),
            "temperature": ctx.state["temperature"], "num_train_blocks": blocks, **logs}


def retrain_loss(model, batch, ctx):
    loss, logs = _task_loss(model, batch, policy_mode="fixed")
    return {"loss": loss, **logs}


# -- phases ----------------------------------------------------------------------------------------------------------
def build_policy_phases(recipe: AdaShareRecipe, model, len_train1: int, len_train2: int, world_size: int = 1):
    """Warm-up and policy-learning phases (datasets `train1`+`train2` as `train`, `train1`, `train2`)."""
    from ...training import Phase, Update

    betas = (0.5, 0.999)
    warmup = Phase(
        name="warmup",
        steps=recipe.warmup_steps,
        batch_size=recipe.batch_size,
        updates=[Update(
            name="weights", dataset="train", loss=warmup_loss, parameters=network_parameters,
            optimizer=lambda p: torch.optim.Adam(_param_groups(p, model, recipe), betas=betas,
                                                 weight_decay=recipe.weight_decay),
            scheduler=_step_lr(recipe),
        )],
    )
    weight_steps, policy_steps = policy_epoch_lengths(recipe, len_train1, len_train2, world_size)
    epoch_length = max(weight_steps, policy_steps)
    weight_every = max(1, epoch_length // weight_steps)
    policy_every = max(1, epoch_length // policy_steps)

    def end_of_step(ctx):
        if (ctx.step + 1) % epoch_length == 0:
            ctx.state["temperature"] = ctx.state["temperature"] * recipe.gumbel_tau_decay
            ctx.state["policy_epoch"] = ctx.state["policy_epoch"] + 1

    policy = Phase(
        name="policy",
        steps=recipe.policy_epochs * epoch_length,
        batch_size=recipe.batch_size,
        updates=[
            Update(name="weights", dataset="train1", loss=weight_loss, parameters=network_parameters,
                   # the authors' SGD LR stays constant in this phase (no scheduler is attached to it)
                   optimizer=lambda p: torch.optim.SGD(_param_groups(p, model, recipe), lr=recipe.lr, momentum=0.9,
                                                       weight_decay=recipe.weight_decay),
                   every=weight_every, offset=weight_every - 1),
            Update(name="policy", dataset="train2", loss=policy_loss, parameters=policy_parameters,
                   optimizer=lambda p: torch.optim.Adam(p, lr=recipe.policy_lr,
                                                        weight_decay=recipe.policy_weight_decay),
                   every=policy_every, offset=policy_every - 1),
        ],
        on_step_end=end_of_step,
    )
    return [warmup, policy]


def build_retrain_phase(recipe: AdaShareRecipe, model, name: str = "retrain"):
    from ...training import Phase, Update

    return Phase(
        name=name,
        steps=recipe.retrain_steps,
        batch_size=recipe.batch_size,
        updates=[Update(
            name="weights", dataset="train", loss=retrain_loss, parameters=network_parameters,
            optimizer=lambda p: torch.optim.Adam(_param_groups(p, model, recipe), betas=(0.5, 0.999),
                                                 weight_decay=recipe.weight_decay),
            scheduler=_step_lr(recipe),
        )],
    )


# -- evaluation ------------------------------------------------------------------------------------------------------
def task_types(config) -> dict[str, str]:
    """`{task: task type}` of an `AdaShareConfig`, in its task order (what `effhub.multitask` takes)."""
    return {task: config.task_types[task] for task in config.task_names}


def _statistics(model, batch, policy_mode=None):
    """Per-sample sufficient statistics of every task, keyed `task/statistic` (for gather + sum)."""
    config = model.config
    output = model(batch["pixel_values"], policy_mode=policy_mode)
    return task_statistics(output.logits, batch["labels"], task_types(config), config.tasks, batch.get("label_mask"),
                           config.ignore_index)


def evaluate_model(run, model, dataset, collate_fn, batch_size, policy_mode=None):
    """Test scores `{task: {metric: value}}` of `model` on `dataset`, on the processes of `run` (or alone: None)."""
    from ...training import evaluate

    step = lambda m, b: _statistics(m, b, policy_mode)  # noqa: E731
    if run is not None:
        totals = run.evaluate(model, dataset, step, batch_size, collate_fn=collate_fn)
    else:
        totals = evaluate(model, dataset, step, batch_size, collate_fn=collate_fn)
    return scores_from_statistics(task_types(model.config), totals)


# -- entry points ----------------------------------------------------------------------------------------------------
def single_task_config(recipe: AdaShareRecipe, task: str, class_weights: dict | None = None):
    """The config of the single-task reference for `task`: same backbone and head, that task alone (with its
    segmentation class weights, when `class_weights` has them)."""
    model = recipe.model
    task_types = {task: model.task_types[task]} if model.task_types and task in model.task_types else None
    weights = {task: recipe.task_loss_weights[task]} if task in recipe.task_loss_weights else None
    classes = {task: class_weights[task]} if class_weights and task in class_weights else None
    sparsity = ({task: recipe.task_sparsity_weights[task]} if task in recipe.task_sparsity_weights else None)
    return recipe.model_config(tasks={task: model.tasks[task]}, task_types=task_types, task_loss_weights=weights,
                               task_sparsity_weights=sparsity,
                               segmentation_class_weights=classes)


def train_fixed_architecture(run, recipe: AdaShareRecipe, seed: int, stage: str, config, policy, initial_state,
                             datasets, test_set, collate_fns, policy_logits=None):
    """Train `config` with a fixed `policy` for `recipe.retrain_steps` (the re-training phase) as the run's stage
    `stage`; returns the stage's result, whose outputs hold the `test` scores (and `val` scores when `datasets` has a
    `val` split, which is then left out of training). `initial_state` (optional) gives the starting weights; hard
    sharing and single-task references use it with an all-ones policy."""
    from .modeling_adashare import AdaShareModel

    torch.manual_seed(seed)
    model = AdaShareModel(copy.deepcopy(config))  # its own config: set_policy writes the policy into it
    if initial_state is not None:
        model.load_state_dict({k: v for k, v in initial_state.items() if k in model.state_dict()}, strict=False)
    if policy_logits is not None:
        with torch.no_grad():
            for task, values in policy_logits.items():
                model.policy[task].copy_(torch.tensor(values))
    model.set_policy(policy)
    train_collate, eval_collate = collate_fns
    val = datasets.get("val")

    def outputs(trained):
        scores = {}
        if val is not None:  # selection looks at validation only; test is reported, never used
            scores["val"] = evaluate_model(run, trained, val, eval_collate, recipe.eval_batch_size)
        scores["test"] = evaluate_model(run, trained, test_set, eval_collate, recipe.eval_batch_size)
        return scores

    return run.train_stage(stage, model, [build_retrain_phase(recipe, model)], {"train": datasets["train"]},
                           collate_fn=train_collate, outputs=outputs)


def train_single_task_references(run, recipe: AdaShareRecipe, seed: int, train_data, test_set, val=None,
                                 class_weights=None) -> dict:
    """One single-task model per task, trained like the re-trained AdaShare (same steps, all blocks).

    Returns `{task: test scores}`, or `({task: test scores}, {task: validation scores})` when `val` is given."""
    references, validation = {}, {}
    for task in recipe.model.tasks:
        config = single_task_config(recipe, task, class_weights)
        collate_fns = (make_collator(recipe, [task], True), make_collator(recipe, [task], False))
        datasets = {"train": train_data} if val is None else {"train": train_data, "val": val}
        result = train_fixed_architecture(run, recipe, seed, f"single-{task}", config,
                                          {task: [1] * config.num_blocks}, None, datasets, test_set, collate_fns)
        references[task] = result.outputs["test"][task]
        if val is not None:
            validation[task] = result.outputs["val"][task]
    return references if val is None else (references, validation)


def delta_t(config, scores: dict, references: dict) -> dict:
    """Delta_T (%) of `scores` against the single-task `references` (`effhub.multitask.delta_t` with the tasks of
    `config`): `{"delta_t", "per_task"}`."""
    return multitask.delta_t(task_types(config), scores, references)


# draws `candidate_policies` makes for each new distinct sample before it gives up (cold, peaked logits)
MAX_SAMPLE_DRAWS = 50


def candidate_policies(model, recipe: AdaShareRecipe, generator: torch.Generator) -> list[dict[str, list[int]]]:
    """The architectures phase 3 re-trains: `argmax`: the most likely policy alone; `sample` (the paper):
    `retrain_samples` policies sampled from the logits; `argmax_and_samples`: the most likely policy and up to
    `retrain_samples - 1` *distinct* sampled ones (a sample equal to an earlier candidate is drawn again, at most
    `MAX_SAMPLE_DRAWS` times per candidate, so peaked logits may give fewer candidates)."""
    if recipe.architecture == "argmax":
        return [model.argmax_policy()]
    if recipe.architecture == "sample":
        return [model.sample_policy(generator) for _ in range(recipe.retrain_samples)]
    policies = [model.argmax_policy()]
    for _ in range(recipe.retrain_samples - 1):
        for _ in range(MAX_SAMPLE_DRAWS):
            policy = model.sample_policy(generator)
            if policy not in policies:
                policies.append(policy)
                break
    return policies


def _keep_warmup_weights(path: Path, kept: dict):
    """`on_phase_start` of the policy phase: keep the warm-up (hard-sharing) weights in `kept` and on disk.

    The card and the demo compare with this model. A run resumed inside the policy phase reads them back from disk
    (the model it is handed then holds the initial weights, before the checkpoint is restored)."""
    from safetensors.torch import load_file

    def keep(model, ctx):
        if ctx.step == 0:
            kept.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            if ctx.is_main_process:
                atomic_save_safetensors(kept, path)
        else:
            kept.update(load_file(str(path)))
        ctx.accelerator.wait_for_everyone()

    return keep


def train(recipe: AdaShareRecipe, options) -> Path:
    """Run the three phases as the run's stages: `policy` (warm-up + policy learning), one `retrain-<i>` per sampled
    architecture, and one `single-<task>` per task when the recipe asks for single-task references. The run folder
    ends with the re-trained model, its processor, splits, candidates and measured results.

    Args:
        recipe (`AdaShareRecipe`): the recipe.
        options (`effhub.training.RunOptions`): output folder, seed, data folder, resume, precision, ...
    """
    from datasets import concatenate_datasets

    from ...recipes import recipe_to_dict
    from ...training import Run
    from .card_adashare import write_adashare_card
    from .modeling_adashare import AdaShareModel

    seed = options.seed_or(recipe.seed)
    # data errors (a missing folder, a missing file) surface before anything is written
    train_set, test_set = load_datasets(recipe, options.data_dir)
    split = split_ids(train_set, recipe.val_fraction, seed)
    train1, train2, val = split.select(train_set)
    train_all = concatenate_datasets([train1, train2])
    config = recipe.model_config()
    check_curriculum(recipe, config.num_blocks)
    class_weights = segmentation_class_weights(recipe, config, train_all)
    if class_weights:
        config = recipe.model_config(segmentation_class_weights=class_weights)
    tasks = config.task_names
    collate_fns = (make_collator(recipe, tasks, True), make_collator(recipe, tasks, False))

    torch.manual_seed(seed)
    model = AdaShareModel(config)
    initial_state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    with Run(options, method="adashare", seed=seed, recipe=recipe_to_dict(recipe)) as run:
        layout = run.layout
        if run.is_main_process:
            atomic_write_json(layout.artifact(SPLITS_FILE), split.to_dict())
            atomic_save_safetensors(initial_state, layout.private(INITIAL_WEIGHTS_FILE))

        # phases 1 + 2: warm-up (every block: the hard-sharing model the card compares with) and policy learning
        phases = build_policy_phases(recipe, model, len(train1), len(train2))
        warmup_weights: dict = {}
        phases[1].on_phase_start = _keep_warmup_weights(layout.stage_path(POLICY_STAGE, WARMUP_WEIGHTS_FILE),
                                                        warmup_weights)

        def policy_outputs(trained):
            warmup = AdaShareModel(config)
            warmup.load_state_dict(warmup_weights)
            scores = evaluate_model(run, warmup, test_set, collate_fns[1], recipe.eval_batch_size, "shared")
            val_scores = evaluate_model(run, warmup, val, collate_fns[1], recipe.eval_batch_size, "shared")
            return {"warmup_test": scores, "warmup_val": val_scores}

        policy_stage = run.train_stage(POLICY_STAGE, model, phases,
                                       {"train": train_all, "train1": train1, "train2": train2},
                                       collate_fn=collate_fns[0],
                                       initial_state={"temperature": recipe.gumbel_tau_init, "policy_epoch": 0},
                                       outputs=policy_outputs)
        model = policy_stage.model
        warmup_test = policy_stage.outputs["warmup_test"]
        logits = {task: value.detach().cpu().tolist() for task, value in model.policy.items()}

        # single-task references first: model selection normalises each task's validation score by theirs
        references = None
        normaliser, normalised_by = policy_stage.outputs.get("warmup_val"), "warm-up model (validation)"
        if recipe.single_task_references:
            references, normaliser = train_single_task_references(run, recipe, seed, train_all, test_set, val,
                                                                  class_weights)
            normalised_by = "single-task references (validation)"
            if run.is_main_process:
                atomic_write_json(layout.artifact(SINGLE_TASK_FILE), references)

        # phase 3: the architecture(s) to re-train from the initial weights; the best on validation is kept
        policies = candidate_policies(model, recipe, torch.Generator().manual_seed(seed))
        candidates, best, best_model = [], None, None
        for index, policy in enumerate(policies):
            result = train_fixed_architecture(run, recipe, seed, f"retrain-{index}", config, policy, initial_state,
                                              {"train": train_all, "val": val}, test_set, collate_fns,
                                              policy_logits=logits)
            score = selection_score(result.outputs["val"], normaliser)
            candidates.append({"index": index, "policy": policy, "val": result.outputs["val"], "score": score,
                               "test": result.outputs["test"]})
            if best is None or score > best["score"]:
                best, best_model = candidates[-1], result.model

        run.save_pretrained(best_model)
        if run.is_main_process:  # every rank holds the same result; one writes it
            image_size = recipe.crop_size or list(np.asarray(train_set[0]["image"]).shape[:2])
            make_processor(recipe, image_size).save_pretrained(layout.root)
            atomic_write_json(layout.artifact(CANDIDATES_FILE), {"candidates": candidates, "best": best["index"],
                                                                 "architecture": recipe.architecture,
                                                                 "selection_normalised_by": normalised_by,
                                                                 "selection_normaliser": normaliser})
            fractions = executed_fractions(best_model, image_size)
            extra = {"warmup_hard_sharing": warmup_test, "executed_fraction": fractions,
                     "selected_candidate": best["index"], "validation": best["val"],
                     "select_probabilities": {t: v.tolist() for t, v in model.select_probabilities().items()},
                     "final_temperature": recipe.gumbel_tau_init * recipe.gumbel_tau_decay ** recipe.policy_epochs}
            if references is not None:
                ours, hard = delta_t(config, best["test"], references), delta_t(config, warmup_test, references)
                extra.update(single_task=references, delta_t=ours["delta_t"], delta_t_per_task=ours["per_task"],
                             delta_t_warmup_hard_sharing=hard["delta_t"],
                             delta_t_warmup_hard_sharing_per_task=hard["per_task"])
            eval_results = eval_results_from_scores(config, recipe.dataset, best["test"], extra=extra)
            write_adashare_card(layout.root, best_model, recipe, eval_results, image_size)
    return layout.root


def evaluate_run(run_dir, options=None) -> dict:
    """Evaluate a trained run folder on its recipe's test split; rewrites `eval_results.json` (and the card).

    Args:
        run_dir (`str` or `Path`): a folder written by `effhub train adashare`.
        options (`effhub.training.EvalOptions`, *optional*): the data folder of real-data recipes, the split name.
    """
    from ...hub.cards import read_eval_results, rewrite_card, write_eval_results
    from ...training import EvalOptions, RunLayout
    from ...training.layout import CARD_SPEC_FILE
    from .modeling_adashare import AdaShareModel

    options = options or EvalOptions()
    layout = RunLayout(run_dir)
    recipe = layout.read_recipe(AdaShareRecipe)
    model = AdaShareModel.from_pretrained(layout.root)
    _, test_set = load_datasets(recipe, options.data_dir)
    scores = evaluate_model(None, model, test_set, make_collator(recipe, model.config.task_names, False),
                            recipe.eval_batch_size)
    previous = read_eval_results(layout.root)["extra"] if layout.eval_results.is_file() else {}
    write_eval_results(layout.root, **eval_results_from_scores(
        model.config, recipe.dataset, scores, options.split,
        extra={k: v for k, v in previous.items() if k != "scores"}))
    if (layout.root / CARD_SPEC_FILE).is_file():
        rewrite_card(layout.root)
    return scores


__all__ = ["train", "evaluate_run", "build_policy_phases", "build_retrain_phase", "policy_epoch_lengths",
           "candidate_policies",
           "num_train_blocks", "check_curriculum", "segmentation_class_weights", "warmup_loss", "weight_loss", "policy_loss",
           "retrain_loss", "scores_from_statistics",
           "selection_score"]
