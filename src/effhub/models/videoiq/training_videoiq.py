"""VideoIQ's three training stages on effhub's run layer, evaluation, and `effhub eval` (Sun et al., ICCV 2021).

Run stages, in order (each resumable; a finished stage is skipped on `--resume`):

1. `full-precision`: the recognition network, unquantised, cross-entropy (the FP network: the frozen teacher of the
   next stages). `policy-backbone`: the policy's frame encoder with a linear head, as a frame-averaged classifier.
2. `any-precision`: from the FP weights; every batch runs every bit-width of the family, highest first, each with
   `CE + kd_weight * KD(out || FP teacher)`; gradients of all bit-widths are accumulated into one optimiser step
   (the passes before the last are backpropagated under `no_sync`, so DDP synchronises once).
3. `policy`: the any-precision network frozen (eval mode), the policy trained with
   `CE + KD + w_pol * CE(aux) + w_bal * sum_a (mean r_a - 1/A)^2 + w_eff * sum_a mean(r_a) c_a + w_ent * mean H(p)`
   (`utils.train_ada` in the authors' code), hard Gumbel-softmax decisions whose temperature decays once per epoch.

The FP teacher never enters the pushed model: `save_pretrained` writes the any-precision network and the policy.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from .recipe_videoiq import VideoIQRecipe

STAGES = ("full-precision", "policy-backbone", "any-precision", "policy")
DATASET_NAME = "effhub generated clips (50% evidence frames)"
DATASET_TYPE = "effhub/clips"


# -- data ------------------------------------------------------------------------------------------------------------
def load_datasets(recipe: VideoIQRecipe, data_dir=None):
    """(train, test) `datasets.Dataset`s with `frames` (uint8, T x H x W x 3), `label` and, for generated clips,
    `frame_kind`; and the class names."""
    from ...data import load_dataset

    if recipe.dataset == "clips":
        from ...data.video.clips import CLIP_CLASSES, clip_config

        clip_config = clip_config(recipe.data.clips_version, num_frames=recipe.data.num_frames,
                                  size=recipe.data.image_size, evidence_fraction=recipe.data.evidence_fraction,
                                  **dict(recipe.dataset_options))
        train = load_dataset("clips", "train", kind="video", num_clips=recipe.data.train_clips, seed=recipe.seed,
                             config=clip_config)
        test = load_dataset("clips", "test", kind="video", num_clips=recipe.data.test_clips, seed=recipe.seed,
                            config=clip_config)
        return train, test, list(CLIP_CLASSES)
    options = {"num_frames": recipe.data.num_frames, "image_size": recipe.data.image_size,
               **dict(recipe.dataset_options)}
    train = load_dataset(recipe.dataset, "train", root=data_dir, kind="video", **options)
    test = load_dataset(recipe.dataset, "val", root=data_dir, kind="video", **options)
    names = train.features["label"].names if hasattr(train.features["label"], "names") else None
    return train, test, names


def make_processor(recipe: VideoIQRecipe):
    """The run's processor: the one place pixels are normalised."""
    from .image_processing_pil_videoiq import VideoIQImageProcessorPil

    size = recipe.data.image_size
    return VideoIQImageProcessorPil(size={"height": size, "width": size}, num_frames=recipe.data.num_frames)


class VideoIQCollator:
    """Batches clips: `pixel_values` `(B, T, 3, H, W)` normalised by the processor, `labels`, `frame_kind`."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, samples):
        frames = torch.stack([torch.as_tensor(sample["frames"]) for sample in samples])
        batch = {"pixel_values": self.processor.normalize_pixels(frames),
                 "labels": torch.as_tensor([int(sample["label"]) for sample in samples])}
        if "frame_kind" in samples[0]:
            batch["frame_kind"] = torch.stack([torch.as_tensor(sample["frame_kind"]) for sample in samples])
        return batch


# -- losses ----------------------------------------------------------------------------------------------------------
def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the teacher's soft targets: `-sum softmax(teacher) log_softmax(student)` (batch mean)."""
    return -(F.softmax(teacher_logits, -1) * F.log_softmax(student_logits, -1)).sum(-1).mean()


CODEBOOKS = ("paper", "bitops")
KD_FRAMES = ("all", "executed")


def efficiency_codebook(config, kind: str = "paper", frame_costs: dict | None = None) -> torch.Tensor:
    """The cost per action of the efficiency loss, skips 0.

    `"paper"`: `min(b, 8)^2 / 64` per bit-width (32 and 8 bits cost 1, 2 bits 0.0625). `"bitops"`: the measured
    BitOPs of one frame at each bit-width over those of the top bit-width (`frame_costs`, from
    `model.frame_costs()`): it includes the full-precision stem, which every executed frame pays, so that a skip saves
    what it really saves (on the demo's network 2 bits cost 0.34 of 8 bits, not 0.0625)."""
    skips = [0.0] * len(config.skip_list)
    if kind == "paper":
        return torch.tensor([min(b, 8) ** 2 / 64 for b in config.bit_width_family] + skips)
    if kind == "bitops":
        if frame_costs is None:
            raise ConfigError("the 'bitops' codebook needs the model's frame costs", "pass model.frame_costs()")
        bits = frame_costs["frame_bitops"]
        return torch.tensor([value / bits[0] for value in bits] + skips)
    raise ConfigError(f"efficiency codebook '{kind}' is unknown", f"use one of {list(CODEBOOKS)}")


def policy_losses(output, labels, teacher_logits, config, recipe: VideoIQRecipe,
                  codebook: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The policy stage's loss terms (weighted) and their sum under `loss` (`codebook`: the efficiency cost per
    action, the paper's by default). The cross-entropy reads the clip logits divided by `policy.ce_temperature`.
    With `policy.kd_frames: executed` the distillation's student is `output.kept_frame_logits` (the skip decisions
    held fixed) and `teacher_logits` must be the teacher's on the same kept frames."""
    weights = recipe.policy
    actions = output.policy
    usage = actions.mean(dim=(0, 1))
    codebook = (efficiency_codebook(config) if codebook is None else codebook).to(usage)
    student = output.kept_frame_logits if weights.kd_frames == "executed" else output.logits
    terms = {
        "ce": F.cross_entropy(output.logits / weights.ce_temperature, labels),
        "kd": weights.kd_weight * distillation_loss(student, teacher_logits),
        "balance": weights.balance_weight * ((usage - 1.0 / config.num_actions) ** 2).sum(),
        "efficiency": weights.efficiency_weight * (usage * codebook).sum(),
        "entropy": weights.entropy_weight * -(output.policy_logprobs.exp() * output.policy_logprobs).sum(-1).mean(),
    }
    if output.policy_aux_logits is not None:
        terms["policy_ce"] = weights.policy_weight * F.cross_entropy(output.policy_aux_logits, labels)
    terms["loss"] = sum(terms.values())
    return terms


# -- optimisers ------------------------------------------------------------------------------------------------------
def _optimizer(stage, groups):
    if stage.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=stage.lr, momentum=0.9, weight_decay=stage.weight_decay)
    if stage.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=stage.lr, weight_decay=stage.weight_decay)
    raise ConfigError(f"optimizer '{stage.optimizer}' is unknown", "use 'sgd' or 'adamw'")


def _cosine(optimizer, total):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(total, 1))


def recognition_parameters(model):
    """The recognition network's parameters (backbone and classifier), PACT clip values excluded."""
    return [p for name, p in model.named_parameters()
            if not name.startswith("policy.") and ".pact_alpha." not in name]


def pact_parameters(model, index: int):
    """The PACT clip values of the family's `index`-th bit-width."""
    return [p for name, p in model.named_parameters() if name.endswith(f".pact_alpha.{index}")]


class PolicyBackboneClassifier(torch.nn.Module):
    """The policy's frame encoder with a linear head on frame-averaged features: stage 1's pre-training of the
    policy backbone as a video classifier (the encoder is shared with the model, not copied)."""

    def __init__(self, model):
        super().__init__()
        self.policy_encoder = model.policy.encoder
        self.config = model.config
        self.head = torch.nn.Linear(model.config.policy_feature_size, model.config.num_labels)
        self._policy = [model.policy]  # not a submodule: only the encoder and the head are this module's

    def forward(self, pixel_values, labels=None):
        features = self._policy[0].encode(pixel_values).mean(1)
        logits = self.head(features)
        return {"logits": logits, "loss": F.cross_entropy(logits, labels) if labels is not None else None}


def check_family_lists(recipe: VideoIQRecipe) -> None:
    """The per-bit lists of the any-precision stage must have one value per bit-width; the efficiency codebook and
    the distillation frames must be known, the policy's cross-entropy temperature positive."""
    if recipe.policy.efficiency_codebook not in CODEBOOKS:
        raise ConfigError(f"policy.efficiency_codebook is '{recipe.policy.efficiency_codebook}'",
                          f"use one of {list(CODEBOOKS)}")
    if recipe.policy.kd_frames not in KD_FRAMES:
        raise ConfigError(f"policy.kd_frames is '{recipe.policy.kd_frames}'", f"use one of {list(KD_FRAMES)}")
    if not recipe.policy.ce_temperature > 0:
        raise ConfigError(f"policy.ce_temperature is {recipe.policy.ce_temperature}",
                          "give a positive temperature (1: the plain cross-entropy)")
    family = recipe.model.bit_width_family
    for name in ("pact_lr", "pact_weight_decay"):
        values = getattr(recipe.any_precision, name)
        if len(values) != len(family):
            raise ConfigError(f"any_precision.{name} has {len(values)} values for the bit-width family {family}",
                              f"give one value per bit-width (highest first), e.g. --set any_precision.{name}="
                              f"{values[:1] * len(family)}")


def build_phases(recipe: VideoIQRecipe, model, teacher_holder: dict, options, train_size: int, world_size: int = 1):
    """The phases of the four run stages: `{stage: [Phase]}` (the teacher is read from `teacher_holder` when the
    stage runs, so that a resumed run uses the reloaded FP network)."""
    from ...training import Phase, Update

    config = model.config
    accum = options.grad_accum
    family = config.bit_width_family

    def fp_loss(net, batch, ctx):
        return net(pixel_values=batch["pixel_values"], labels=batch["labels"], precision="full").loss

    def backbone_loss(net, batch, ctx):
        return net(batch["pixel_values"], batch["labels"])["loss"]

    def ap_loss(net, batch, ctx):
        teacher = teacher_holder["teacher"]
        with torch.no_grad():
            teacher_logits = teacher(pixel_values=batch["pixel_values"], precision="full").logits
        logs, last = {}, None
        for index, bits in enumerate(family):  # highest first; gradients accumulate over the bit-widths
            logits = net(pixel_values=batch["pixel_values"], precision=bits).logits
            loss = F.cross_entropy(logits, batch["labels"]) + \
                recipe.any_precision.kd_weight * distillation_loss(logits, teacher_logits)
            logs[f"loss_{bits}bit"] = loss.detach()
            if index < len(family) - 1:
                with ctx.accelerator.no_sync(net):
                    ctx.accelerator.backward(loss / accum)
            else:
                last = loss
        return {"loss": last, **logs}

    def policy_loss(net, batch, ctx):
        teacher = teacher_holder["teacher"]
        pixel_values = batch["pixel_values"]
        output = net(pixel_values=pixel_values, temperature=ctx.state["temperature"])
        with torch.no_grad():
            # the full-precision network on the frames the policy keeps, or on every frame (the paper's)
            kept = output.policy[..., :config.num_precisions].sum(-1) if recipe.policy.kd_frames == "executed" \
                else None
            teacher_logits = teacher.run_uniform(pixel_values.contiguous(), None, kept)
        if "codebook" not in teacher_holder:
            costs = model.frame_costs() if recipe.policy.efficiency_codebook == "bitops" else None
            teacher_holder["codebook"] = efficiency_codebook(config, recipe.policy.efficiency_codebook, costs)
        terms = policy_losses(output, batch["labels"], teacher_logits, config, recipe, teacher_holder["codebook"])
        usage = output.policy.detach().mean(dim=(0, 1))
        terms.update({f"usage_{name.replace(' ', '_')}": usage[i] for i, name in enumerate(config.action_names)})
        return {key: value if key == "loss" else value.detach() for key, value in terms.items()}

    def ap_groups(net):
        groups = [{"params": recognition_parameters(net), "lr": recipe.any_precision.lr,
                   "weight_decay": recipe.any_precision.weight_decay}]
        for index in range(len(family)):
            groups.append({"params": pact_parameters(net, index), "lr": recipe.any_precision.pact_lr[index],
                           "weight_decay": recipe.any_precision.pact_weight_decay[index]})
        return groups

    def policy_groups(net):
        encoder = list(net.policy.encoder.parameters())
        encoder_ids = {id(p) for p in encoder}
        leaf = [p for p in net.policy.parameters() if id(p) not in encoder_ids]
        return [{"params": leaf, "lr": recipe.policy.lr}, {"params": encoder, "lr": recipe.policy.encoder_lr}]

    stage = recipe.full_precision
    fp = Phase("full-precision", stage.steps, batch_size=stage.batch_size, updates=[Update(
        "recognition", "train", fp_loss,
        parameters=lambda net: [p for name, p in net.named_parameters() if not name.startswith("policy.")],
        optimizer=lambda params: _optimizer(stage, params), scheduler=_cosine)])
    backbone_stage = recipe.policy_backbone
    backbone = Phase("policy-backbone", backbone_stage.steps, batch_size=backbone_stage.batch_size, updates=[Update(
        "encoder", "train", backbone_loss, parameters=lambda net: net.parameters(),
        optimizer=lambda params: _optimizer(backbone_stage, params), scheduler=_cosine)])

    def spread_batchnorm(net, ctx):
        if ctx.step == 0:
            net.spread_top_batchnorm()

    ap_stage = recipe.any_precision
    ap_update = Update("any-precision", "train", ap_loss, parameters=recognition_parameters_and_pact,
                       optimizer=lambda params: _optimizer(ap_stage, ap_groups(model)), scheduler=_cosine)
    ap = Phase("any-precision", ap_stage.steps, batch_size=ap_stage.batch_size, updates=[ap_update],
               on_phase_start=spread_batchnorm)

    policy_stage = recipe.policy
    epoch = policy_stage.epoch_steps or max(1, math.ceil(train_size / (policy_stage.batch_size * world_size)))

    def freeze_recognition(net, ctx):
        net.backbone.eval()
        net.dropout.eval()

    def decay_temperature(ctx):
        if (ctx.step + 1) % epoch == 0:
            ctx.state["temperature"] = ctx.state["temperature"] * config.temperature_decay

    policy = Phase("policy", policy_stage.steps, batch_size=policy_stage.batch_size, updates=[Update(
        "policy", "train", policy_loss, parameters=lambda net: net.policy.parameters(),
        optimizer=lambda params: _optimizer(policy_stage, policy_groups(model)), scheduler=_cosine)],
        on_phase_start=freeze_recognition, on_step_end=decay_temperature)
    return {"full-precision": [fp], "policy-backbone": [backbone], "any-precision": [ap], "policy": [policy]}


def recognition_parameters_and_pact(model):
    """Every parameter the any-precision stage trains (recognition network and all PACT clip values)."""
    return [p for name, p in model.named_parameters() if not name.startswith("policy.")]


# -- evaluation ------------------------------------------------------------------------------------------------------
def video_step(mode):
    """`step_fn` of `effhub.training.evaluate` for one evaluation `mode`: `"policy"` (the learned policy, dynamic),
    `("uniform", bits)` or `"full"`, `("random", seed)` (a uniform random action per frame), `("sampled", seed,
    shares)` (a random action per frame drawn with the given share of each action: a random policy as frequent in
    each action as a learned one). Returns per-video values (gathered, then combined by `summarise`)."""

    def step(model, batch):
        pixel_values = batch["pixel_values"]
        kwargs = {}
        if mode == "full":
            kwargs["precision"] = "full"
        elif isinstance(mode, tuple) and mode[0] == "uniform":
            kwargs["precision"] = mode[1]
        elif isinstance(mode, tuple) and mode[0] == "random":
            generator = torch.Generator().manual_seed(int(mode[1]) + int(batch["labels"].sum()) * 7919
                                                      + int(pixel_values.shape[0]))
            kwargs["actions"] = torch.randint(0, model.config.num_actions, pixel_values.shape[:2],
                                              generator=generator).to(pixel_values.device)
        elif isinstance(mode, tuple) and mode[0] == "sampled":
            generator = torch.Generator().manual_seed(int(mode[1]) + int(batch["labels"].sum()) * 7919
                                                      + int(pixel_values.shape[0]))
            shares = torch.as_tensor(mode[2], dtype=torch.float64)
            drawn = torch.multinomial(shares, pixel_values.shape[0] * pixel_values.shape[1], replacement=True,
                                      generator=generator)
            kwargs["actions"] = drawn.view(pixel_values.shape[:2]).to(pixel_values.device)
        output = model(pixel_values=pixel_values, **kwargs)
        if output.policy is not None:
            actions = output.policy.argmax(-1)
        elif "actions" in kwargs:
            from .modeling_videoiq import _expand_skips

            actions = _expand_skips(kwargs["actions"], model.config)
        else:
            index = -1 if kwargs["precision"] == "full" else model.config.bit_width_family.index(kwargs["precision"])
            actions = torch.full(pixel_values.shape[:2], index, dtype=torch.long, device=pixel_values.device)
        result = {"scores": output.logits.float().softmax(-1), "labels": batch["labels"], "actions": actions,
                  "bitops": output.bitops, "macs": output.macs, "gflops_proxy": output.gflops_proxy}
        if "frame_kind" in batch:
            result["frame_kind"] = batch["frame_kind"]
        return result

    return step


def summarise(model, gathered: dict) -> dict:
    """Top-1, video mAP (softmax scores against the one-hot label, the authors' `actnet_acc`), mean per-video costs,
    the share of each action, and (generated clips) the share of each action per frame kind."""
    from ...metrics import (
        classification_scores,
        classification_statistics,
        multilabel_scores,
        multilabel_statistics,
    )

    config = model.config
    scores, labels = gathered["scores"].cpu(), gathered["labels"].cpu()
    top1 = classification_scores(classification_statistics(scores, labels))["accuracy"]
    onehot = F.one_hot(labels, scores.shape[1])
    video_map = multilabel_scores(multilabel_statistics(scores, onehot))["map"]
    actions = gathered["actions"].cpu()
    names = config.action_names
    share = {name: float((actions == index).float().mean()) for index, name in enumerate(names)}
    if (actions < 0).any():
        share["full precision"] = float((actions < 0).float().mean())
    result = {"top1": top1, "mAP": video_map, "videos": int(labels.numel()),
              "bitops": float(gathered["bitops"].double().mean()), "macs": float(gathered["macs"].double().mean()),
              "gflops_proxy": float(gathered["gflops_proxy"].double().mean()), "action_share": share}
    if "frame_kind" in gathered:
        from ...data.video.clips import FRAME_KINDS

        kinds = gathered["frame_kind"].cpu()
        result["action_share_by_frame_kind"] = {
            kind: {name: float((actions[kinds == k] == index).float().mean()) for index, name in enumerate(names)}
            for k, kind in enumerate(FRAME_KINDS) if (kinds == k).any()}
    return result


def evaluate_mode(model, dataset, collate_fn, batch_size, mode="policy", run=None, examples: int = 0):
    """Evaluate `model` in `mode` (see `video_step`) on `dataset`; on every process of `run` when given."""
    from ...training import evaluate

    step = video_step(mode)
    if run is not None:
        gathered = run.evaluate(model, dataset, step, batch_size, collate_fn=collate_fn, reduce=None)
    else:
        gathered = evaluate(model, dataset, step, batch_size, collate_fn=collate_fn, reduce=None)
    summary = summarise(model, gathered)
    if examples:
        summary["examples"] = {"actions": gathered["actions"][:examples].cpu().tolist(),
                               "labels": gathered["labels"][:examples].cpu().tolist()}
        if "frame_kind" in gathered:
            summary["examples"]["frame_kind"] = gathered["frame_kind"][:examples].cpu().tolist()
    return summary


def frame_kind_accuracy(model, dataset, collate_fn, batch_size, run=None) -> dict:
    """The test-bed check of generated clips: top-1 when only the frames of one kind are read, at one precision
    (the unquantised network, then every bit-width of the family), and every other frame is left out of the
    average (`{kind: {"full precision": top1, "32-bit": top1, ..., "clips": n}}`; a clip without a frame of that
    kind is left out of its row). It shows what each bit-width loses on each kind of frame, i.e. what a per-frame
    policy can buy. Needs the `frame_kind` column."""
    from ...data.video.clips import FRAME_KINDS

    config = model.config
    precisions = [None, *range(config.num_precisions)]
    names = ["full precision", *config.action_names[:config.num_precisions]]

    def step(net, batch):
        kinds, labels, pixel_values = batch["frame_kind"], batch["labels"], batch["pixel_values"]
        batch_size, frames = kinds.shape
        result = {f"present_{k}": (kinds == k).any(1).long() for k in range(len(FRAME_KINDS))}
        for index, precision in enumerate(precisions):
            features = net.frame_features(pixel_values.flatten(0, 1), precision).view(batch_size, frames, -1)
            for k in range(len(FRAME_KINDS)):
                executed = (kinds == k).to(features.dtype)
                logits = net.classify(features * executed[..., None], executed)
                result[f"correct_{k}_{index}"] = ((logits.argmax(-1) == labels) & (kinds == k).any(1)).long()
        return result

    if run is not None:
        totals = run.evaluate(model, dataset, step, batch_size, collate_fn=collate_fn, reduce="sum")
    else:
        from ...training import evaluate

        totals = evaluate(model, dataset, step, batch_size, collate_fn=collate_fn, reduce="sum")
    table = {}
    for k, kind in enumerate(FRAME_KINDS):
        clips = int(totals[f"present_{k}"])
        if clips == 0:
            continue
        table[kind] = {name: float(totals[f"correct_{k}_{index}"]) / clips for index, name in enumerate(names)}
        table[kind]["clips"] = clips
    return table


def full_comparison(model, dataset, collate_fn, batch_size, run=None, random_seed: int = 0) -> dict:
    """The learned policy against every uniform precision, the unquantised network and a uniform random policy."""
    results = {"policy": evaluate_mode(model, dataset, collate_fn, batch_size, "policy", run, examples=8)}
    for bits in model.config.bit_width_family:
        results[f"uniform {bits}-bit"] = evaluate_mode(model, dataset, collate_fn, batch_size, ("uniform", bits), run)
    results["full precision"] = evaluate_mode(model, dataset, collate_fn, batch_size, "full", run)
    results["random policy"] = evaluate_mode(model, dataset, collate_fn, batch_size, ("random", random_seed), run)
    return results


# -- entry points ----------------------------------------------------------------------------------------------------
def train(recipe: VideoIQRecipe, options) -> Path:
    """Run VideoIQ's stages (see the module docstring) into `options.output_dir`; the folder ends with the model
    (any-precision network + policy), its processor, `eval_results.json` and the card.

    Args:
        recipe (`VideoIQRecipe`): the recipe.
        options (`effhub.training.RunOptions`): output folder, seed, data folder, resume, precision, ...
    """
    from ...recipes import recipe_to_dict
    from ...training import Run
    from .card_videoiq import write_videoiq_card
    from .modeling_videoiq import VideoIQForVideoClassification

    seed = options.seed_or(recipe.seed)
    check_family_lists(recipe)
    train_set, test_set, names = load_datasets(recipe, options.data_dir)
    id2label = dict(enumerate(names)) if names else None
    num_labels = len(names) if names else int(max(train_set["label"])) + 1
    config = recipe.model_config(num_labels, id2label)
    processor = make_processor(recipe)
    collate = VideoIQCollator(processor)
    torch.manual_seed(seed)
    model = VideoIQForVideoClassification(config)
    holder: dict = {}

    with Run(options, method="videoiq", seed=seed, recipe=recipe_to_dict(recipe)) as run:
        phases = build_phases(recipe, model, holder, options, len(train_set), run.accelerator.num_processes)
        datasets = {"train": train_set}
        evaluate_fp = lambda trained: {"test": evaluate_mode(trained, test_set, collate,
                                                             recipe.eval_batch_size, "full", run)}
        fp = run.train_stage("full-precision", model, phases["full-precision"], datasets, collate_fn=collate,
                             outputs=evaluate_fp)
        model = fp.model
        teacher = copy.deepcopy(model).eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        holder["teacher"] = teacher.to(run.accelerator.device)

        run.train_stage("policy-backbone", PolicyBackboneClassifier(model), phases["policy-backbone"], datasets,
                        collate_fn=collate)

        def ap_outputs(trained):
            return {f"{bits}-bit": evaluate_mode(trained, test_set, collate, recipe.eval_batch_size,
                                                 ("uniform", bits), run) for bits in config.bit_width_family}

        model = run.train_stage("any-precision", model, phases["any-precision"], datasets, collate_fn=collate,
                                outputs=ap_outputs).model
        policy = run.train_stage("policy", model, phases["policy"], datasets, collate_fn=collate,
                                 initial_state={"temperature": config.temperature_init})
        model = policy.model
        results = full_comparison(model, test_set, collate, recipe.eval_batch_size, run, random_seed=seed)
        run.save_pretrained(model)
        if run.is_main_process:
            processor.save_pretrained(run.layout.root)
            write_videoiq_card(run.layout.root, model, recipe, results,
                               final_temperature=policy.state.get("temperature"))
        run.wait_for_everyone()
    holder.clear()
    return run.layout.root


def evaluate_run(run_dir, options=None) -> dict:
    """`effhub eval <run>`: top-1, video mAP, per-video MACs, BitOPs and the GFLOPs proxy of a trained run on its
    recipe's test split, for the learned policy and every uniform precision; rewrites `eval_results.json` and the
    card.

    Args:
        run_dir (`str` or `Path`): a folder written by `effhub train videoiq`.
        options (`effhub.training.EvalOptions`, *optional*): the data folder of real-data recipes.
    """
    from ...training import EvalOptions, RunLayout
    from .card_videoiq import write_videoiq_card
    from .modeling_videoiq import VideoIQForVideoClassification

    options = options or EvalOptions()
    layout = RunLayout(run_dir)
    recipe = layout.read_recipe(VideoIQRecipe)
    model = VideoIQForVideoClassification.from_pretrained(layout.root)
    _, test_set, _ = load_datasets(recipe, options.data_dir)
    collate = VideoIQCollator(make_processor(recipe))
    results = full_comparison(model, test_set, collate, recipe.eval_batch_size, random_seed=recipe.seed)
    write_videoiq_card(layout.root, model, recipe, results)
    return {"split": "test", **{name: {k: v for k, v in value.items() if k != "examples"}
                                for name, value in results.items()}}


__all__ = [
    "STAGES",
    "PolicyBackboneClassifier",
    "VideoIQCollator",
    "build_phases",
    "distillation_loss",
    "efficiency_codebook",
    "evaluate_mode",
    "evaluate_run",
    "frame_kind_accuracy",
    "full_comparison",
    "load_datasets",
    "make_processor",
    "policy_losses",
    "summarise",
    "train",
]
