"""`python -m benchmarks [--quick] dime_fm`: DIME-FM (Sun et al., ICCV 2023, arXiv 2303.18232) on the shipped
clip-teacher and the generated caption world.

1. Student against teacher: vision-tower parameters, CPU time per image (median of interleaved repeats), zero-shot
   top-1 on the single-object split (64 classes). Targets: at most 1/4 of the teacher's vision parameters and at
   least 90% of its zero-shot accuracy, with no paired data.
2. Data efficiency, the paper's point: the DIME-FM student (N unpaired images + N unpaired texts, the teacher's
   features) against the same architecture trained contrastively from scratch (CLIP's loss, both towers) on N paired
   captions (the teacher itself saw 20,000 pairs and 16,000 labelled single-object images). Target: DIME-FM ahead.
3. DIME-FM's losses on unpaired data against plain logit distillation on paired data (open_clip's distillation: the
   contrastive loss plus the cross-entropy to the teacher's image-text logits), the same student, steps and batch.

Every arm trains the demo recipe's student for the same number of steps with the same batch size, for each seed.
Writes a table and `benchmarks/results/dime_fm.json` (`dime_fm-quick.json` with `--quick`: fewer samples, steps and
seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from effhub.tables import text_table

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
SETTINGS = {
    "full": {"samples": 4000, "steps": 400, "batch_size": 64, "seeds": [0, 1, 2]},
    "quick": {"samples": 2000, "steps": 150, "batch_size": 64, "seeds": [0]},
}
ARMS = ("dime-fm", "contrastive-from-scratch", "paired-logit-distillation")


def _recipe(settings: dict, seed: int):
    from effhub.recipes import load_recipe

    n, steps, batch = settings["samples"], settings["steps"], settings["batch_size"]
    return load_recipe("dime-fm", "demo", [f"data.images=world:{n}", f"data.texts=world:{n}", f"train.steps={steps}",
                                           f"train.image_batch_size={batch}", f"train.text_batch_size={batch}",
                                           f"train.warmup_steps={max(1, steps // 10)}", f"seed={seed}"])


class PairRows:
    """Paired images and captions: `{"image", "text", "row"}`."""

    def __init__(self, pairs):
        self.pairs = pairs
        self.texts = list(pairs["caption"])

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, index):
        return {"image": self.pairs[int(index)]["image"].convert("RGB"), "text": self.texts[int(index)],
                "row": int(index)}


class PairCollator:
    def __init__(self, processor):
        from effhub.models.dime_fm.features_dime_fm import PixelCollator

        self.pixels, self.tokenizer = PixelCollator(processor), processor.tokenizer

    def __call__(self, items):
        tokens = self.tokenizer([item["text"] for item in items], padding=True, truncation=True, return_tensors="pt")
        return {"pixel_values": self.pixels.pixel_values([item["image"] for item in items]),
                "input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}


def _train_paired(arm: str, recipe, teacher, pairs, output_dir: Path):
    """Train the contrastive-from-scratch or paired-logit-distillation arm; returns the trained model."""
    import torch

    from effhub.models.dime_fm.configuration_dime_fm import DimeFmConfig
    from effhub.models.dime_fm.features_dime_fm import _image_step, _text_step
    from effhub.models.dime_fm.losses_dime_fm import paired_logit_distillation_loss
    from effhub.models.dime_fm.modeling_dime_fm import DimeFmModel
    from effhub.models.dime_fm.training_dime_fm import (
        build_optimizer, build_scheduler, build_student, student_vision_config,
    )
    from effhub.training import Phase, Run, RunOptions, Update

    torch.manual_seed(recipe.seed)
    if arm == "contrastive-from-scratch":
        model = DimeFmModel(DimeFmConfig(
            text_config=teacher.model.config.text_config.to_dict(),
            vision_config={**student_vision_config(recipe, teacher.model),
                           "projection_dim": teacher.projection_dim},
            projection_dim=teacher.projection_dim, freeze_text_tower=False, vision_pooling=recipe.student.pooling))

        def parameters(m):
            return [p for p in m.parameters() if p.requires_grad]

        def loss(m, batch, ctx):
            out = m(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"], return_loss=True)
            return out.loss

        def clamp(ctx):
            with torch.no_grad():
                ctx.unwrapped_model.logit_scale.clamp_(max=4.6052)
    else:
        model = build_student(teacher, recipe)
        clamp = None

        def parameters(m):
            return m.vision_parameters()

        def loss(m, batch, ctx):
            student = m(pixel_values=batch["pixel_values"]).image_embeds
            with torch.no_grad():
                images = _image_step(teacher.model, batch)["image_embeds"]
                texts = _text_step(teacher.model, batch)["text_embeds"]
            return paired_logit_distillation_loss(images, student, texts, ctx.unwrapped_model.logit_scale.exp().detach())

    t = recipe.train
    phase = Phase(name="paired", steps=t.steps, batch_size=t.image_batch_size, max_grad_norm=t.max_grad_norm,
                  on_step_end=clamp, updates=[Update(
                      name="model", dataset="pairs", loss=loss, parameters=parameters,
                      optimizer=lambda params: build_optimizer(model, params, recipe),
                      scheduler=lambda optimizer, total: build_scheduler(optimizer, total, recipe))])
    with Run(RunOptions(output_dir=output_dir, progress=False), method="dime-fm-benchmark", seed=recipe.seed) as run:
        trained = run.train_stage(arm, model, [phase], {"pairs": PairRows(pairs)},
                                  collate_fn=PairCollator(teacher.processor)).model
    return trained.eval()


def _train_dime_fm(recipe, teacher, features: Path, output_dir: Path):
    import torch

    from effhub.models.dime_fm.training_dime_fm import build_student, distillation_phase, training_datasets
    from effhub.training import Run, RunOptions

    torch.manual_seed(recipe.seed)
    student = build_student(teacher, recipe)
    with Run(RunOptions(output_dir=output_dir, progress=False), method="dime-fm-benchmark", seed=recipe.seed) as run:
        datasets, collate, _ = training_datasets(recipe, teacher, features, run.accelerator)
        trained = run.train_stage("dime-fm", student, [distillation_phase(recipe, student)], datasets,
                                  collate_fn=collate).model
    return trained.eval()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks dime_fm", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and steps, one seed")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    from effhub.atomic import atomic_write_json
    from effhub.data.captions import SPLIT_NAMES
    from effhub.models.dime_fm.features_dime_fm import _world, cache_features, load_teacher
    from effhub.models.dime_fm.training_dime_fm import (
        evaluation_splits, pixel_tensor, seconds_per_image, vision_parameter_count, zero_shot_statistics,
    )

    settings = SETTINGS["quick" if args.quick else "full"]
    start = time.perf_counter()
    teacher = load_teacher("base")
    world, splits = evaluation_splits(_recipe(settings, 0))
    prompts = world.zero_shot_prompts()

    def zero_shot(model):
        return zero_shot_statistics(model, teacher.processor, splits["zero_shot"], prompts)["accuracy"]

    pairs = _world().pairs(settings["samples"], seed=0, split=SPLIT_NAMES["teacher"]["train"])
    results = {arm: [] for arm in ARMS}
    students = {}
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        features = cache_features(teacher, f"world:{settings['samples']}", f"world:{settings['samples']}",
                                  work / "features", progress=False)
        for seed in settings["seeds"]:
            recipe = _recipe(settings, seed)
            for arm in ARMS:
                began = time.perf_counter()
                if arm == "dime-fm":
                    model = _train_dime_fm(recipe, teacher, features, work / f"{arm}-{seed}")
                else:
                    model = _train_paired(arm, recipe, teacher, pairs, work / f"{arm}-{seed}")
                accuracy = zero_shot(model)
                results[arm].append({"seed": seed, "zero_shot_accuracy": accuracy,
                                     "train_seconds": time.perf_counter() - began})
                print(f"seed {seed} {arm}: zero-shot {accuracy:.3f} ({time.perf_counter() - began:.0f} s)")
                students.setdefault(arm, model)
    teacher_accuracy = zero_shot(teacher.model)
    student = students["dime-fm"]
    pixels = pixel_tensor(teacher.processor, splits["zero_shot"].select(range(128)))
    timings = {"student": [], "teacher": []}
    for _ in range(5):  # interleaved repeats on a shared machine
        timings["student"].append(seconds_per_image(student, pixels, repeats=1))
        timings["teacher"].append(seconds_per_image(teacher.model, pixels, repeats=1))
    student_params, teacher_params = vision_parameter_count(student), vision_parameter_count(teacher.model)

    def mean(arm):
        return statistics.mean(r["zero_shot_accuracy"] for r in results[arm])

    def spread(arm):
        values = [r["zero_shot_accuracy"] for r in results[arm]]
        return statistics.stdev(values) if len(values) > 1 else 0.0

    dime = mean("dime-fm")
    summary = {
        "vision_parameter_ratio": student_params / teacher_params,
        "time_per_image_ratio": statistics.median(timings["student"]) / statistics.median(timings["teacher"]),
        "zero_shot_ratio": dime / teacher_accuracy,
        "targets": {
            "at_most_quarter_of_vision_parameters": student_params / teacher_params <= 0.25,
            "at_least_90_percent_of_zero_shot": dime / teacher_accuracy >= 0.9,
            "ahead_of_contrastive_from_scratch": dime > mean("contrastive-from-scratch"),
            "ahead_of_paired_logit_distillation": dime > mean("paired-logit-distillation"),
        },
    }
    rows = [("model", "data used", "vision params", "ms / image", "zero-shot top-1 (mean +- sd)", "vs teacher")]
    rows.append(("teacher (shipped base)", "20,000 pairs + 16,000 labelled images", f"{teacher_params:,}",
                 f"{statistics.median(timings['teacher']) * 1e3:.3f}", f"{teacher_accuracy:.3f}", "1.000"))
    data = {"dime-fm": f"{settings['samples']:,} images + {settings['samples']:,} texts, unpaired",
            "contrastive-from-scratch": f"{settings['samples']:,} pairs",
            "paired-logit-distillation": f"{settings['samples']:,} pairs + teacher logits"}
    for arm in ARMS:
        rows.append((arm, data[arm], f"{student_params:,}",
                     f"{statistics.median(timings['student']) * 1e3:.3f}" if arm == "dime-fm" else "same",
                     f"{mean(arm):.3f} +- {spread(arm):.3f}", f"{mean(arm) / teacher_accuracy:.3f}"))
    print(text_table(rows))
    for name, met in summary["targets"].items():
        print(f"  {name.replace('_', ' ')}: {'met' if met else 'MISSED'}")
    result = {
        "benchmark": "dime_fm", "quick": args.quick, "settings": settings,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average": os.getloadavg()},
        "teacher": {"id": teacher.teacher_id, "zero_shot_accuracy": teacher_accuracy,
                    "vision_parameters": teacher_params, "seconds_per_image": timings["teacher"]},
        "student": {"vision_parameters": student_params, "seconds_per_image": timings["student"]},
        "arms": results, "data": data, "summary": summary, "wall_seconds": time.perf_counter() - start,
    }
    output = args.output or RESULTS_DIR / ("dime_fm-quick.json" if args.quick else "dime_fm.json")
    atomic_write_json(output, json.loads(json.dumps(result)))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
