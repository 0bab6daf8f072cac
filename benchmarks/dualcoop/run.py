"""`python -m benchmarks [--quick] dualcoop`: DualCoOp against its baselines on the same frozen CLIP and step budget.

On the caption world's multi-label images (`SPLIT_NAMES["prompt-learning"]`) and a frozen CLIP (default: the teacher
shipped inside effhub), with exact mAP (every score ranked, percent):

1. trainable parameters and adapter file size against the CLIP's parameters (target: under 0.5%);
2. mAP at label ratios 10% ... 90% for DualCoOp (`SETUPS`: effhub's set-up for the shipped teacher, the paper's,
   effhub's with the pooled embedding as the only region, and effhub's with a learned shared negative prompt in
   place of the image-level threshold), single-prompt CoOp (one learned context from the hand
   prompt's words, scored per class by the cosine of the global image embedding with the class prompt, binary
   cross-entropy on the known labels), a linear probe on the frozen pooled image features (logistic regression on
   the known labels) and zero-shot CLIP with the hand-written prompt "a photo of a <class>." (per-class cosine; the
   across-class softmax variant too). Targets: DualCoOp above every baseline at every ratio, and at 10% above the
   linear probe at 100%;
3. zero-shot: DualCoOp trained on the 48 seen classes, mAP on the 16 unseen ones against zero-shot CLIP; the step-0
   scores of the word-initialised prompts (untrained) are recorded against zero-shot CLIP too;
4. training step time and the memory of trainable state (parameters, gradients, SGD momentum) against full
   fine-tuning of the CLIP with the same loss.

The image tower is frozen in every method, so its features are computed once: DualCoOp and CoOp train on the cached
region / global features with `dual_prompt_features` and `dual_logits`, the same functions (and so the same numbers)
as the adapter's forward. Every method gets the same number of SGD steps and batch size. Writes a table to stdout and
`benchmarks/results/dualcoop[-quick].json`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent.parent / "results"
FULL = {"train": 3000, "test": 1000, "steps": 300, "ratios": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        "seeds": [0, 1, 2], "timing_steps": 10}
QUICK = {"train": 600, "test": 300, "steps": 60, "ratios": [0.1, 0.5, 0.9], "seeds": [0], "timing_steps": 3}
BATCH = 32


def exact_map(scores, targets) -> float:
    from effhub.models.clip_teacher.probing import average_precisions

    return float(np.nanmean(average_precisions(np.asarray(scores), np.asarray(targets))) * 100)


def features(clip, pixel_values, modes=("values", "class_values", "global")):
    """({mode: region features [N, P, D]}, global image embeddings [N, D], pooled features [N, width]) of frozen
    CLIP."""
    import torch

    from effhub.adapters.dualcoop.layer import region_features

    regions, embeds, pooled = {mode: [] for mode in modes}, [], []
    with torch.no_grad():
        for start in range(0, len(pixel_values), 256):
            batch = pixel_values[start:start + 256]
            for mode in modes:
                regions[mode].append(region_features(clip, batch, mode))
            output = clip.vision_model(pixel_values=batch)
            pooled.append(output.pooler_output)
            embeds.append(clip.visual_projection(output.pooler_output))
    return {mode: torch.cat(parts) for mode, parts in regions.items()}, torch.cat(embeds), torch.cat(pooled)


def class_prompts(tokenizer, class_names):
    from effhub.adapters.dualcoop.layer import pad_class_tokens
    from effhub.adapters.dualcoop.model import class_token_ids

    return pad_class_tokens(class_token_ids(tokenizer, class_names), tokenizer.eos_token_id)


def _sgd(params, steps, lr):
    import math

    import torch

    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / max(steps, 1), 1.0))))
    return optimizer, scheduler


# DualCoOp set-ups: the paper's (MaskCLIP value regions, random contexts, a negative prompt per class, no offset)
# and effhub's recipe for its small teacher (docs/dualcoop.md, "Why the prompt learners sat at chance" and "An
# image-level threshold instead of a negative prompt"), with its two ablations
SETUPS = {
    "paper": {"regions": "values", "negative_prompt": "class", "ctx_init": None, "offset": False},
    "effhub": {"regions": "class_values", "negative_prompt": "image_threshold", "ctx_init": "a photo of a",
               "offset": True},
    "effhub_global": {"regions": "global", "negative_prompt": "image_threshold", "ctx_init": "a photo of a",
                      "offset": True},
    "effhub_shared_negative": {"regions": "class_values", "negative_prompt": "shared", "ctx_init": "a photo of a",
                               "offset": True},
}
HAND_PROMPT = "a photo of a"


def _word_contexts(clip, tokenizer, words):
    import torch

    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    return clip.text_model.embeddings.token_embedding.weight.detach()[torch.as_tensor(ids)].clone()


def train_dualcoop(clip, tokenizer, regions, targets, class_names, steps, seed, loss_weight, lr=0.002, n_ctx=16,
                   setup="effhub"):
    """Contexts (positive, negative) trained on cached region features of `SETUPS[setup]`; returns a scoring
    function. The paper's SGD lr 0.002 (a higher one loses the prompts' ranking within the 60 quick steps)."""
    import torch

    from effhub.adapters.dualcoop.config import PAPER_LOGIT_SCALE, PAPER_REGION_TEMPERATURE
    from effhub.adapters.dualcoop.layer import dual_logit_offset, dual_logits, presence_logits
    from effhub.adapters.dualcoop.loss import asymmetric_loss
    from effhub.adapters.dualcoop.model import dual_prompt_features

    options = SETUPS[setup]
    torch.manual_seed(seed)
    width = clip.text_model.embeddings.token_embedding.weight.shape[1]
    if options["ctx_init"]:
        positive = torch.nn.Parameter(_word_contexts(clip, tokenizer, options["ctx_init"]))
        negative = torch.nn.Parameter(torch.randn(positive.shape[0], width) * 0.02)
    else:
        positive, negative = (torch.nn.Parameter(torch.randn(n_ctx, width) * 0.02) for _ in range(2))
    temperature = PAPER_REGION_TEMPERATURE * float(clip.logit_scale.exp()) / 100
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id

    image_threshold = options["negative_prompt"] == "image_threshold"

    def text(names_ids):
        return dual_prompt_features(clip, positive, negative, *names_ids, options["negative_prompt"], bos, eos)

    prompts = class_prompts(tokenizer, class_names)
    targets = torch.as_tensor(targets)
    offset = 0.0
    if options["offset"]:
        with torch.no_grad():
            offset = dual_logit_offset(dual_logits(regions, text(prompts), temperature, PAPER_LOGIT_SCALE,
                                                   image_threshold=image_threshold)[0], targets)
    optimizer, scheduler = _sgd([positive] if image_threshold else [positive, negative], steps, lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(len(regions), (BATCH,), generator=generator)
        logits, _ = dual_logits(regions[index], text(prompts), temperature, PAPER_LOGIT_SCALE, offset, image_threshold)
        loss = asymmetric_loss(logits, targets[index], weight=loss_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()

    def score(test_regions, names):
        with torch.no_grad():
            logits, _ = dual_logits(test_regions, text(class_prompts(tokenizer, names)), temperature,
                                    PAPER_LOGIT_SCALE, offset, image_threshold)
        # ranked by the log-odds: the float32 probabilities of confident classes tie just below 1
        return presence_logits(logits).numpy()

    return score


def train_coop(clip, tokenizer, embeds, targets, class_names, steps, seed, lr=0.002):
    """Single-prompt CoOp: one learned context (initialised from the hand prompt's words), per-class cosine with the
    global embedding plus a learned bias (started at the log-odds of the positive rate minus the mean logit), BCE
    on known labels. Random contexts and a zero bias lose the ranking within the quick steps (docs/dualcoop.md)."""
    import torch

    from effhub.adapters.dualcoop.layer import encode_prompts

    torch.manual_seed(seed)
    context = torch.nn.Parameter(_word_contexts(clip, tokenizer, HAND_PROMPT))
    scale = float(clip.logit_scale.exp())
    ids, lengths = class_prompts(tokenizer, class_names)
    targets = torch.as_tensor(targets).float()
    image = embeds / embeds.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        text = encode_prompts(clip, context, ids, lengths, tokenizer.bos_token_id, tokenizer.eos_token_id)
        logits = scale * image @ (text / text.norm(dim=-1, keepdim=True)).T
        known = targets >= 0
        rate = float((targets == 1).sum() / known.sum().clamp(min=1))
        rate = min(max(rate, 1e-4), 1 - 1e-4)
        start = float(torch.logit(torch.tensor(rate))) - float(logits[known].mean())
    bias = torch.nn.Parameter(torch.tensor(start))
    optimizer, scheduler = _sgd([context, bias], steps, lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(len(image), (BATCH,), generator=generator)
        text = encode_prompts(clip, context, ids, lengths, tokenizer.bos_token_id, tokenizer.eos_token_id)
        logits = scale * image[index] @ (text / text.norm(dim=-1, keepdim=True)).T + bias
        known = (targets[index] >= 0).float()
        losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets[index].clamp(min=0),
                                                                      reduction="none")
        loss = (losses * known).sum() / known.sum().clamp(min=1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    with torch.no_grad():
        text = encode_prompts(clip, context, ids, lengths, tokenizer.bos_token_id, tokenizer.eos_token_id)
    return lambda test_embeds: ((test_embeds / test_embeds.norm(dim=-1, keepdim=True))
                                @ (text / text.norm(dim=-1, keepdim=True)).T).numpy()


def zero_shot_clip(clip, tokenizer, embeds, class_names):
    """(per-class cosine, across-class softmax) scores with "a photo of a <class>."; the softmax as its logarithm,
    which ranks the same without float32 ties near 1."""
    import torch

    from effhub.models.clip_teacher.evaluation import encode_texts

    text = encode_texts(clip, tokenizer, [f"a photo of a {name}." for name in class_names])
    image = embeds / embeds.norm(dim=-1, keepdim=True)
    cosine = image @ text.T
    return cosine.numpy(), torch.log_softmax(float(clip.logit_scale.exp()) * cosine, dim=-1).numpy()


def linear_probe(pooled_train, targets, pooled_test, seed):
    import torch

    from effhub.models.clip_teacher.probing import fit_linear_probe, standardise

    train, test = standardise(pooled_train, pooled_test)
    targets = torch.as_tensor(targets)
    weight, bias = fit_linear_probe(train, targets.clamp(min=0), targets.shape[1], multilabel=True,
                                    known=targets >= 0, seed=seed)
    return (test @ weight + bias).numpy()


def step_cost(clip_folder, class_names, tokenizer, steps):
    """Median training step time and trainable-state bytes: DualCoOp adapter against full fine-tuning."""
    import torch
    from peft import get_peft_model

    from effhub import DualCoOpConfig
    from effhub.models.clip_teacher.weights import load_base_teacher

    pixel_values = torch.randn(BATCH, 3, 64, 64)
    labels = (torch.rand(BATCH, len(class_names)) < 0.05).long()
    results = {}
    for name in ("dualcoop", "full_fine_tuning"):
        clip = load_base_teacher(clip_folder)[0].train()
        model = get_peft_model(clip, DualCoOpConfig(class_names=list(class_names), n_ctx=16))
        if name == "full_fine_tuning":
            for parameter in model.parameters():
                parameter.requires_grad_(True)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
        times = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            loss = model(pixel_values=pixel_values, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        count = sum(p.numel() for p in params)
        results[name] = {"step_seconds": float(np.median(times[1:])), "trainable_parameters": count,
                         "trainable_state_bytes": count * 4 * 3}
    return results


def main(argv=None) -> int:
    import torch

    from effhub.data.captions import SPLIT_NAMES, CaptionWorld, default_cache_dir
    from effhub.data.multilabel import multi_hot
    from effhub.data.multilabel.partial import partial_label_mask, partial_targets
    from effhub.models.clip_teacher.evaluation import images_to_uint8
    from effhub.models.clip_teacher.processing import pixel_values_from_uint8
    from effhub.models.clip_teacher.weights import BASE_TEACHER, base_teacher_path, load_base_teacher

    parser = argparse.ArgumentParser(prog="python -m benchmarks dualcoop", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, three ratios, fewer images and steps")
    parser.add_argument("--teacher", default=BASE_TEACHER, help="shipped teacher name (default: base)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 1 quick, 3 full)")
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    if args.seeds is not None:
        sizes["seeds"] = list(range(args.seeds))
    torch.set_num_threads(1)
    started = time.time()
    clip, processor = load_base_teacher(args.teacher)
    for parameter in clip.parameters():
        parameter.requires_grad_(False)
    tokenizer = processor.tokenizer
    world = CaptionWorld(cache_dir=default_cache_dir())
    names = SPLIT_NAMES["prompt-learning"]
    classes = list(world.class_names)
    train = world.multilabel(sizes["train"], seed=0, classes="all", split=names["train"])
    seen_train = world.multilabel(sizes["train"], seed=0, classes="seen", split=names["train"])
    test = world.multilabel(sizes["test"], seed=0, classes="all", split=names["test"])
    data = {}
    for key, split in (("train", train), ("seen", seen_train), ("test", test)):
        regions, embeds, pooled = features(clip, pixel_values_from_uint8(images_to_uint8(split["image"])))
        data[key] = {"regions": regions, "embeds": embeds, "pooled": pooled,
                     "targets": multi_hot(split["labels"], len(classes))}
    test_targets = data["test"]["targets"]
    print(f"features of {sizes['train']} + {sizes['train']} + {sizes['test']} images in {time.time() - started:.0f}s")

    # 1. parameters and adapter size
    from peft import get_peft_model

    from effhub import DualCoOpConfig

    adapter = get_peft_model(load_base_teacher(args.teacher)[0], DualCoOpConfig(class_names=classes, n_ctx=16))
    trainable = sum(p.numel() for p in adapter.parameters() if p.requires_grad)
    clip_parameters = sum(p.numel() for p in clip.parameters())
    with tempfile.TemporaryDirectory() as folder:
        adapter.save_pretrained(folder, save_embedding_layers=False)
        adapter_bytes = (Path(folder) / "adapter_model.safetensors").stat().st_size
    clip_bytes = (base_teacher_path(args.teacher) / "model.safetensors").stat().st_size
    size = {"trainable_parameters": trainable, "clip_parameters": clip_parameters,
            "fraction": trainable / clip_parameters, "adapter_bytes": adapter_bytes, "clip_bytes": clip_bytes}

    # 2. label ratios
    cosine, softmax = zero_shot_clip(clip, tokenizer, data["test"]["embeds"], classes)
    zero_shot = {"cosine": exact_map(cosine, test_targets), "softmax": exact_map(softmax, test_targets)}
    ratio_rows = {}
    probe_full = [exact_map(linear_probe(data["train"]["pooled"], data["train"]["targets"], data["test"]["pooled"],
                                         seed), test_targets) for seed in sizes["seeds"]]
    for ratio in sizes["ratios"]:
        rows = {"dualcoop": [], "dualcoop_paper": [], "dualcoop_global": [], "dualcoop_shared_negative": [],
                "coop": [], "linear_probe": []}
        for seed in sizes["seeds"]:
            targets = partial_targets(data["train"]["targets"],
                                      partial_label_mask(*data["train"]["targets"].shape, ratio, seed))
            weight = {0.1: 0.1, 0.2: 0.05, 0.3: 0.04, 0.4: 0.03}.get(ratio, 0.02)
            for key, setup in (("dualcoop", "effhub"), ("dualcoop_paper", "paper"),
                               ("dualcoop_global", "effhub_global"),
                               ("dualcoop_shared_negative", "effhub_shared_negative")):
                mode = SETUPS[setup]["regions"]
                score = train_dualcoop(clip, tokenizer, data["train"]["regions"][mode], targets, classes,
                                       sizes["steps"], seed, weight, setup=setup)
                rows[key].append(exact_map(score(data["test"]["regions"][mode], classes), test_targets))
            coop = train_coop(clip, tokenizer, data["train"]["embeds"], targets, classes, sizes["steps"], seed)
            rows["coop"].append(exact_map(coop(data["test"]["embeds"]), test_targets))
            rows["linear_probe"].append(exact_map(linear_probe(data["train"]["pooled"], targets,
                                                               data["test"]["pooled"], seed), test_targets))
        ratio_rows[f"{ratio:.1f}"] = {key: {"mean": float(np.mean(v)), "std": float(np.std(v)), "runs": v}
                                      for key, v in rows.items()}
        print(f"ratio {ratio:.1f}: " + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in rows.items()))

    # 3. zero-shot on unseen classes
    seen = list(world.seen_classes)
    unseen_columns = [classes.index(name) for name in world.unseen_classes]
    rows = (test_targets[:, unseen_columns] == 1).any(axis=1)
    unseen_targets = test_targets[rows][:, unseen_columns]
    seen_targets = data["seen"]["targets"][:, [classes.index(name) for name in seen]]
    zsl = {"effhub": [], "paper": []}
    for seed in sizes["seeds"]:
        for setup, runs in zsl.items():
            mode = SETUPS[setup]["regions"]
            score = train_dualcoop(clip, tokenizer, data["seen"]["regions"][mode], seen_targets, seen, sizes["steps"],
                                   seed, 0.02, setup=setup)
            runs.append(exact_map(score(data["test"]["regions"][mode][torch.as_tensor(rows)], world.unseen_classes),
                                  unseen_targets))
    zero_shot_unseen = {"dualcoop": {"mean": float(np.mean(zsl["effhub"])), "runs": zsl["effhub"]},
                        "dualcoop_paper": {"mean": float(np.mean(zsl["paper"])), "runs": zsl["paper"]},
                        "zero_shot_clip": exact_map(cosine[rows][:, unseen_columns], unseen_targets),
                        "images": int(rows.sum())}

    # step 0: the word-initialised prompts before any training (all labels known), against zero-shot CLIP
    step0 = {}
    for setup in ("effhub", "effhub_global", "effhub_shared_negative"):
        mode = SETUPS[setup]["regions"]
        score = train_dualcoop(clip, tokenizer, data["train"]["regions"][mode], data["train"]["targets"], classes, 0,
                               0, 0.02, setup=setup)
        step0[f"dualcoop_{setup}"] = exact_map(score(data["test"]["regions"][mode], classes), test_targets)
    step0["coop"] = exact_map(train_coop(clip, tokenizer, data["train"]["embeds"], data["train"]["targets"], classes,
                                         0, 0)(data["test"]["embeds"]), test_targets)
    print(f"step 0 (word-initialised, untrained): {step0}")

    # 4. step cost
    cost = step_cost(args.teacher, classes, tokenizer, sizes["timing_steps"])

    dualcoop_means = {r: v["dualcoop"]["mean"] for r, v in ratio_rows.items()}
    best_baseline = {r: max(v["coop"]["mean"], v["linear_probe"]["mean"], zero_shot["cosine"], zero_shot["softmax"])
                     for r, v in ratio_rows.items()}
    targets_met = {
        "under_half_percent": bool(size["fraction"] < 0.005),
        "above_every_baseline_at_every_ratio": bool(all(dualcoop_means[r] > best_baseline[r]
                                                        for r in dualcoop_means)),
        "at_10pct_above_probe_at_100pct": bool("0.1" in dualcoop_means
                                               and dualcoop_means["0.1"] > np.mean(probe_full)),
        "zero_shot_above_clip": bool(zero_shot_unseen["dualcoop"]["mean"] > zero_shot_unseen["zero_shot_clip"]),
    }
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
        "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} torch thread(s), "
                   f"torch {torch.__version__}".replace("  ", " "),
        "teacher": args.teacher, "sizes": sizes, "size": size, "zero_shot_clip_map": zero_shot,
        "linear_probe_100pct": {"mean": float(np.mean(probe_full)), "runs": probe_full},
        "ratios": ratio_rows, "step0": step0, "setups": SETUPS, "zero_shot_unseen": zero_shot_unseen,
        "step_cost": cost, "targets_met": targets_met,
        "seconds": time.time() - started,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"dualcoop{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\ntrainable {trainable:,} of {clip_parameters:,} CLIP parameters ({size['fraction']:.3%}); adapter file "
          f"{adapter_bytes / 1024:.1f} KiB vs CLIP {clip_bytes / 2**20:.1f} MiB")
    print(f"{'ratio':>6} {'DualCoOp':>10} {'CoOp':>8} {'probe':>8} {'ZS cos':>8} {'ZS softmax':>10}")
    for ratio, row in ratio_rows.items():
        print(f"{ratio:>6} {row['dualcoop']['mean']:>10.2f} {row['coop']['mean']:>8.2f} "
              f"{row['linear_probe']['mean']:>8.2f} {zero_shot['cosine']:>8.2f} {zero_shot['softmax']:>10.2f}")
    print(f"linear probe at 100%: {np.mean(probe_full):.2f}")
    print(f"zero-shot, {len(unseen_columns)} unseen classes on {int(rows.sum())} images: DualCoOp "
          f"{zero_shot_unseen['dualcoop']['mean']:.2f} vs zero-shot CLIP {zero_shot_unseen['zero_shot_clip']:.2f}")
    print(f"step: DualCoOp {cost['dualcoop']['step_seconds']:.3f}s vs full fine-tuning "
          f"{cost['full_fine_tuning']['step_seconds']:.3f}s; trainable state "
          f"{cost['dualcoop']['trainable_state_bytes']:,} vs {cost['full_fine_tuning']['trainable_state_bytes']:,} B")
    print(f"targets: {targets_met}\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
