"""VideoIQ's evaluation JSON and model card: accuracy next to average BitOPs and the paper's GFLOPs proxy for the
learned policy, every uniform precision, the unquantised network and a uniform random policy; the saving against full
precision; the share of each action (per frame kind on generated clips); a picture of the per-frame choices."""

from __future__ import annotations

from pathlib import Path

from ...citations import bibtex
from ...registry import get_method

DATASETS = {"clips": ("effhub/clips", "effhub generated clips"), "activitynet": ("activitynet", "ActivityNet-v1.3"),
            "fcvid": ("fcvid", "FCVID"), "mini-kinetics": ("mini-kinetics", "Mini-Kinetics"),
            "mini-sports1m": ("mini-sports1m", "Mini-Sports1M")}


def comparison_rows(results: dict) -> list[dict]:
    """One row per evaluated configuration: top-1, mAP, mean BitOPs, proxy, MACs and ratios to full precision."""
    reference = results.get("full precision") or next(iter(results.values()))
    rows = []
    for name, value in results.items():
        rows.append({"name": name, "top1": value["top1"], "mAP": value["mAP"], "gbitops": value["bitops"] / 1e9,
                     "gflops_proxy": value["gflops_proxy"], "gmacs": value["macs"] / 1e9,
                     "bitops_ratio": value["bitops"] / reference["bitops"],
                     "proxy_ratio": value["gflops_proxy"] / reference["gflops_proxy"],
                     "macs_ratio": value["macs"] / reference["macs"]})
    return rows


def eval_results_from(results: dict, dataset: str, split: str = "test", extra: dict | None = None) -> dict:
    """The evaluation JSON (`effhub.hub.cards` contract) of the learned policy's measured results."""
    dataset_type, dataset_name = DATASETS.get(dataset, (dataset, dataset))
    policy = results["policy"]
    entries = [("top1", "accuracy", "Top-1 accuracy (dynamic policy)", policy["top1"]),
               ("mAP", "mAP", "Video mAP (dynamic policy)", policy["mAP"]),
               ("bitops", "bitops", "Average GBitOPs per video (dynamic policy)", policy["bitops"] / 1e9),
               ("gflops_proxy", "gflops", "Average GFLOPs proxy per video (dynamic policy)", policy["gflops_proxy"])]
    rows = [{"task_type": "video-classification", "task_name": "Video classification", "dataset_type": dataset_type,
             "dataset_name": dataset_name, "dataset_split": split, "metric_type": metric_type,
             "metric_name": metric_name, "metric_value": float(value)}
            for _, metric_type, metric_name, value in entries]
    return {"model_name": "videoiq", "results": rows,
            "extra": {"comparison": comparison_rows(results), "evaluations": results, **(extra or {})}}


def save_choices_picture(path, model, examples: dict) -> Path:
    """Heatmap of the policy's per-frame choices on sample clips (rows: clips, columns: frames; value: action id)."""
    from ...hub.cards import save_heatmap

    actions = examples["actions"]
    kinds = examples.get("frame_kind")
    rows = []
    for index, label in enumerate(examples["labels"]):
        name = model.config.id2label.get(label, str(label)) if model.config.id2label else str(label)
        rows.append(f"clip {index} ({name})")
    columns = [str(t + 1) for t in range(len(actions[0]))]
    if kinds is not None:  # mark the generated clips' evidence frames
        from ...data.video.clips import EVIDENCE_KINDS

        rows = [f"{row}: evidence at {[t + 1 for t, k in enumerate(kinds[i]) if k in EVIDENCE_KINDS]}"
                for i, row in enumerate(rows)]
    names = ", ".join(f"{i} = {name}" for i, name in enumerate(model.config.action_names))
    return save_heatmap(path, actions, rows, columns, title=f"Per-frame actions ({names})", value_format=".0f")


def write_videoiq_card(run_dir, model, recipe, results: dict, final_temperature: float | None = None) -> Path:
    """Write the run's `eval_results.json`, plots and `README.md` card from measured `results`."""
    from ...hub.cards import save_bar_plot, write_model_card
    from ...recipes import recipe_to_dict

    run_dir = Path(run_dir)
    config = model.config
    extra = {"final_temperature": final_temperature} if final_temperature is not None else {}
    eval_results = eval_results_from(results, recipe.dataset, extra=extra)
    policy, full = results["policy"], results["full precision"]
    images = {"choices": str(save_choices_picture(run_dir / "images" / "choices.png", model,
                                                  policy["examples"])),
              "action_share": str(save_bar_plot(run_dir / "images" / "action_share.png", policy["action_share"],
                                                "Share of each action (dynamic policy, test clips)", "share"))}
    costs = model.frame_costs()
    generated = recipe.dataset == "clips"
    clips_version = getattr(recipe.data, "clips_version", 1)
    if generated:
        from ...data.video.clips import clip_config

        clips = clip_config(clips_version)
        contrast, faint_contrast = clips.stripe_contrast, clips.faint_stripe_contrast
        faint_share = clips.faint_fraction
    card_spec = {
        "template": "effhub.models.videoiq:card_template.md",
        "model_name": "videoiq",
        "license": "mit",
        "tags": ["video-classification", "videoiq", "dynamic-quantization", "efficient-inference"],
        "datasets": [DATASETS.get(recipe.dataset, (recipe.dataset,))[0]],
        "pipeline_tag": "video-classification",
        "images": images,
        "summary": (f"VideoIQ (Sun et al., ICCV 2021) trained by effhub on "
                    f"{DATASETS.get(recipe.dataset, (None, recipe.dataset))[1]}: an any-precision ResNet-"
                    f"{config.backbone_depth} (bit-widths {config.bit_width_family}) over {config.num_frames} frames, "
                    f"and a policy network that picks, per frame, one bit-width or a skip "
                    f"({', '.join(config.action_names)}). At inference each frame runs only at its chosen precision "
                    f"and skipped frames are not computed."
                    + (f" The generated clips show the class evidence in {recipe.data.evidence_fraction:.0%} of the "
                       "frames; the others are blank, blurred, occluded or repeats of the previous frame."
                       + (f" In {faint_share:.0%} of the clips (version {clips_version} of the generator) the stripes "
                          f"that tell the class apart have a low contrast ({faint_contrast:g} instead of "
                          f"{contrast:g}), a detail that low bit-widths lose." if clips_version >= 2 else "")
                       if generated else "")),
        "model_details": {
            "recognition network": f"TSN-style ResNet-{config.backbone_depth}, base width {config.base_width}",
            "bit-width family": " / ".join(str(b) for b in config.bit_width_family) + " + skip " +
                                ", ".join(str(s) for s in config.skip_list),
            "policy network": f"{config.policy_backbone} on {config.policy_image_size} px frames + LSTM "
                              f"({config.policy_hidden_size}), {config.policy_precision}",
            "GBitOPs per video (policy network)": model.policy_video_costs()["bitops"] / 1e9,
            "a clip whose every frame the policy skips": (
                "keeps its least-skipped frame at its likeliest bit-width (policy_keeps_a_frame)"
                if config.policy_keeps_a_frame else "runs no frame (the paper's rule)"),
            "policy cross-entropy temperature": (
                f"{recipe.policy.ce_temperature:g}" + (" (the paper's loss)" if recipe.policy.ce_temperature == 1
                                                        else " (clip logits softened in the policy's loss)")),
            "parameters (recognition)": sum(p.numel() for n, p in model.named_parameters()
                                            if not n.startswith("policy.")),
            "parameters (policy)": sum(p.numel() for p in model.policy.parameters()),
            "frames x size": f"{config.num_frames} x {config.image_size} px",
            "GMACs per frame (backbone, full precision)": costs["frame_macs"] / 1e9,
            "test clips": policy["videos"],
        },
        "comparison": comparison_rows(results),
        "saving": {"bitops": 1 - policy["bitops"] / full["bitops"],
                   "gflops_proxy": 1 - policy["gflops_proxy"] / full["gflops_proxy"],
                   "top1_change": policy["top1"] - full["top1"]},
        "action_share": policy["action_share"],
        "action_share_by_frame_kind": policy.get("action_share_by_frame_kind"),
        "usage": ("import effhub\nfrom transformers import AutoModelForVideoClassification\n"
                  "model = AutoModelForVideoClassification.from_pretrained(\"<repo or folder>\").eval()\n"
                  "out = model(pixel_values)  # [B, T, C, H, W]: out.logits, out.policy [B, T, A], out.bitops\n"
                  f"uniform = model(pixel_values, precision={config.bit_width_family[-1]})  # every frame at one "
                  "bit-width"),
        "training": recipe_to_dict(recipe),
        "limitations": ("Measured on the data set and split named in the results only. BitOPs count every "
                        "convolution and linear layer actually executed (weight bits x activation bits x "
                        "multiply-adds; full-precision layers at 32 x 32), policy network included; the GFLOPs proxy "
                        "is the paper's formula, in which 32-bit and 8-bit frames cost the same. Times are not "
                        "reported here: see the benchmark."),
        "citation": bibtex(*get_method("videoiq").papers),
    }
    return write_model_card(run_dir, card_spec, eval_results)


__all__ = ["comparison_rows", "eval_results_from", "save_choices_picture", "write_videoiq_card"]
