"""`python -m benchmarks [--quick] dime_fm`: DIME-FM (Sun et al., ICCV 2023, arXiv 2303.18232) on the shipped
clip-teacher and the generated caption world.

1. Student against teacher: vision-tower parameters, CPU time per image (median of interleaved repeats), zero-shot
   top-1 on the single-object split (64 classes). Targets: at most 1/4 of the teacher's vision parameters and at
   least 90% of its zero-shot accuracy, with no paired data.
2. Data efficiency, the paper's point: the DIME-FM student (N unpaired images + N unpaired texts, the teacher's
   features) against the same architecture trained contrastively from scratch (CLIP's loss, both towers) on N paired
   captions (the teacher itself saw 20,000 pairs, 16,000 labelled single-object images and 16,000 labelled
   scenes). Target: DIME-FM ahead.
3. DIME-FM's losses on unpaired data against plain logit distillation on paired data (open_clip's distillation: the
   contrastive loss plus the cross-entropy to the teacher's image-text logits), the same student, steps and batch.
4. The paper's second stage: each DIME-FM student then gets a smaller distilled text tower (the `two-stage`
   recipe's `text_stage`), and its zero-shot accuracy is measured again with that tower instead of the teacher's.

Every arm trains the `base` recipe's student (`--quick`: the `demo` recipe's) for the same number of steps with the
same image batch, for each seed, on the same N single-object images (`world-single:N`): DIME-FM sees them without
captions beside N unpaired scene captions (256 texts per step in the full run: the teacher's text features are
cached, so they cost the student nothing), the paired arms see them with their own captions (one per image).
`--arms` trains a subset (DIME-FM always). Arms run in parallel
processes (`--workers`, one torch thread each). Time budget on 2 CPU cores: full (3 seeds x 3 arms of 8,000 steps)
about 60-80 minutes, `--quick` (1 seed, 250 steps) about 5 minutes. Writes a table and
`benchmarks/results/dime_fm.json` (`dime_fm-quick.json` with `--quick`).
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
    "full": {"recipe": "base", "samples": 16000, "steps": None, "batch_size": 64, "text_batch_size": 256,
             "seeds": [0, 1, 2], "text_steps": None},
    "quick": {"recipe": "demo", "samples": 3000, "steps": None, "batch_size": 64, "seeds": [0], "text_steps": 300},
}
TEXT_STAGE_RECIPE = "two-stage"  # where the second stage's settings come from
ARMS = ("dime-fm", "contrastive-from-scratch", "paired-logit-distillation")
CAPTION_EMBEDS = "caption_embeds.npy"


def _recipe(settings: dict, seed: int, unpaired: bool = False):
    """The recipe of every arm: `settings["recipe"]` with the benchmark's samples, batch size and seed (and steps
    when `settings["steps"]` is set: the warm-up then a tenth of them). A paired arm sees one caption per image; the
    DIME-FM arm (`unpaired`) takes `settings["text_batch_size"]` unpaired texts per step when set (the teacher's
    text features are cached, so more texts cost the student almost nothing)."""
    from effhub.recipes import load_recipe

    n, steps, batch = settings["samples"], settings["steps"], settings["batch_size"]
    texts = settings.get("text_batch_size") if unpaired else None
    overrides = [f"data.images=world-single:{n}", f"data.texts=world:{n}", f"train.image_batch_size={batch}",
                 f"train.text_batch_size={texts or batch}", f"seed={seed}"]
    if steps:
        overrides += [f"train.steps={steps}", f"train.warmup_steps={max(1, steps // 10)}"]
    return load_recipe("dime-fm", settings["recipe"], overrides)


def _text_stage_recipe(settings: dict, seed: int):
    """The DIME-FM arm's recipe with the `two-stage` recipe's text stage (`settings["text_steps"]` steps if set)."""
    from dataclasses import replace

    from effhub.recipes import load_recipe

    recipe = _recipe(settings, seed, unpaired=True)
    text_stage = load_recipe("dime-fm", TEXT_STAGE_RECIPE).text_stage
    if settings.get("text_steps"):
        text_stage = replace(text_stage, steps=settings["text_steps"])
    recipe.text_stage = text_stage
    return recipe


def _paired_images(count: int):
    """The N single-object images of `world-single:N` with their own captions (the paired arms' data)."""
    from effhub.models.dime_fm.features_dime_fm import world_single_objects

    return world_single_objects(count)


class PairRows:
    """Paired images and captions: `{"image", "text", "row"}`, with the teacher's embeddings of both when given
    (`teacher_images`, `teacher_texts`: computed once, as DIME-FM's cache is)."""

    def __init__(self, pairs, processor, teacher_embeds=None):
        from effhub.models.dime_fm.features_dime_fm import ImageRows

        self.images = ImageRows(pairs.select_columns(["image"]), processor)  # decoded once, as DIME-FM's are
        self.texts = list(pairs["caption"])
        self.teacher_embeds = teacher_embeds

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, index):
        item = {**self.images[int(index)], "text": self.texts[int(index)]}
        if self.teacher_embeds is not None:
            item["teacher_images"], item["teacher_texts"] = (values[int(index)] for values in self.teacher_embeds)
        return item


class PairCollator:
    def __init__(self, processor):
        from effhub.models.dime_fm.features_dime_fm import PixelCollator

        self.pixels, self.tokenizer = PixelCollator(processor), processor.tokenizer

    def __call__(self, items):
        import numpy as np
        import torch

        tokens = self.tokenizer([item["text"] for item in items], padding=True, truncation=True, return_tensors="pt")
        batch = {"pixel_values": self.pixels.pixel_values([item["image"] for item in items]),
                 "input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
        if "teacher_images" in items[0]:
            for key in ("teacher_images", "teacher_texts"):
                batch[key] = torch.as_tensor(np.stack([item[key] for item in items]))
        return batch


def _train_paired(arm: str, recipe, teacher, pairs, output_dir: Path, teacher_embeds=None):
    """Train the contrastive-from-scratch or paired-logit-distillation arm; returns the trained model.

    `teacher_embeds` (`(image embeds, text embeds)` of the pairs, row-aligned): the teacher's features for the
    logit distillation, computed once; without them the teacher runs on every batch."""
    import torch

    from effhub.models.dime_fm.configuration_dime_fm import DimeFmConfig
    from effhub.models.dime_fm.features_dime_fm import _image_step, _text_step
    from effhub.models.dime_fm.losses_dime_fm import paired_logit_distillation_loss
    from effhub.models.dime_fm.modeling_dime_fm import DimeFmModel
    from effhub.models.dime_fm.training_dime_fm import (
        build_optimizer,
        build_scheduler,
        build_student,
        student_vision_config,
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
            if "teacher_images" in batch:
                images, texts = batch["teacher_images"], batch["teacher_texts"]
            else:
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
        trained = run.train_stage(arm, model, [phase], {"pairs": PairRows(pairs, teacher.processor, teacher_embeds)},
                                  collate_fn=PairCollator(teacher.processor)).model
    return trained.eval()


def _train_dime_fm(recipe, teacher, features: Path, output_dir: Path):
    """The vision stage, then (with `recipe.text_stage.steps`) the text stage; the vision tower is frozen in the
    second, so the student's images against the teacher's prompts measure the vision stage after both."""
    import torch

    from effhub.models.dime_fm.training_dime_fm import (
        build_student,
        distillation_phase,
        text_distillation_phase,
        text_stage_datasets,
        training_datasets,
    )
    from effhub.training import Run, RunOptions

    torch.manual_seed(recipe.seed)
    student = build_student(teacher, recipe)
    with Run(RunOptions(output_dir=output_dir, progress=False), method="dime-fm-benchmark", seed=recipe.seed) as run:
        datasets, collate, _ = training_datasets(recipe, teacher, features, run.accelerator)
        trained = run.train_stage("dime-fm", student, [distillation_phase(recipe, student)], datasets,
                                  collate_fn=collate).model
        if recipe.text_stage.steps:
            datasets, collate = text_stage_datasets(recipe, teacher, features)
            trained = run.train_stage("dime-fm-text", trained, [text_distillation_phase(recipe, trained)], datasets,
                                      collate_fn=collate).model
    return trained.eval()


def _cache_caption_embeds(teacher, pairs, path: Path) -> None:
    """The teacher's (normalised) text embeddings of the paired images' captions, in row order, saved to `path`."""
    import numpy as np

    from effhub.models.clip_teacher.evaluation import encode_texts

    np.save(path, encode_texts(teacher.model, teacher.processor.tokenizer, pairs["caption"], 512).numpy())


def _run_arm(arm: str, seed: int, settings: dict, features: str, workdir: str, threads: int,
             keep_model: bool, teacher_spec: str = "base") -> dict:
    """Train and measure one arm for one seed (in a worker process); the model is saved when `keep_model`."""
    import torch

    from effhub.models.dime_fm.features_dime_fm import load_teacher
    from effhub.models.dime_fm.training_dime_fm import (
        evaluation_splits,
        zero_shot_statistics,
    )

    torch.set_num_threads(threads)
    began = time.perf_counter()
    teacher = load_teacher(teacher_spec)
    recipe = _recipe(settings, seed)
    output = Path(workdir) / f"{arm}-{seed}"
    extra = {}
    if arm == "dime-fm":
        recipe = _text_stage_recipe(settings, seed)
        model = _train_dime_fm(recipe, teacher, Path(features), output)
    else:
        embeds = None
        if arm == "paired-logit-distillation":  # the cached image features are those of the same images, in order
            import numpy as np

            from effhub.models.dime_fm.features_dime_fm import load_feature_cache

            embeds = (load_feature_cache(features, teacher).image_embeds, np.load(Path(workdir) / CAPTION_EMBEDS))
        model = _train_paired(arm, recipe, teacher, _paired_images(settings["samples"]), output, embeds)
    world, splits = evaluation_splits(recipe)
    text_model = None
    if arm == "dime-fm":  # the vision stage is measured with the teacher's prompts, the second stage with its own
        text_model = teacher.model
        extra = {"two_stage_zero_shot_accuracy": zero_shot_statistics(
            model, teacher.processor, splits["zero_shot"], world.zero_shot_prompts())["accuracy"],
            "text_steps": recipe.text_stage.steps}
    accuracy = zero_shot_statistics(model, teacher.processor, splits["zero_shot"], world.zero_shot_prompts(),
                                    text_model=text_model)["accuracy"]
    if keep_model:
        model.save_pretrained(Path(workdir) / "student")
    seconds = time.perf_counter() - began
    second = f", with its distilled text tower {extra['two_stage_zero_shot_accuracy']:.3f}" if extra else ""
    print(f"seed {seed} {arm}: zero-shot {accuracy:.3f}{second} ({seconds:.0f} s)", flush=True)
    return {"arm": arm, "seed": seed, "zero_shot_accuracy": accuracy, "train_seconds": seconds,
            "steps": recipe.train.steps, **extra}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks dime_fm", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the demo recipe, one seed")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="arms trained at once, in separate processes (default: 2)")
    parser.add_argument("--teacher", default="base",
                        help="the teacher: base (shipped, default) or a CLIP folder (e.g. a candidate teacher)")
    parser.add_argument("--arms", default=",".join(ARMS),
                        help=f"comma-separated arms to train (default: all; dime-fm always): {', '.join(ARMS)}")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    asked = set(args.arms.split(","))
    arms = [arm for arm in ARMS if arm == "dime-fm" or arm in asked]
    unknown = sorted(asked - set(ARMS))
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    from effhub.atomic import atomic_write_json
    from effhub.models.dime_fm.features_dime_fm import cache_features, load_teacher
    from effhub.models.dime_fm.modeling_dime_fm import DimeFmModel
    from effhub.models.dime_fm.training_dime_fm import (
        evaluation_splits,
        pixel_tensor,
        seconds_per_image,
        text_parameter_count,
        vision_parameter_count,
        zero_shot_statistics,
    )

    settings = SETTINGS["quick" if args.quick else "full"]
    start = time.perf_counter()
    teacher = load_teacher(args.teacher)
    first = _recipe(settings, settings["seeds"][0])
    world, splits = evaluation_splits(first)
    prompts = world.zero_shot_prompts()

    def zero_shot(model):
        return zero_shot_statistics(model, teacher.processor, splits["zero_shot"], prompts)["accuracy"]

    results = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        features = cache_features(teacher, first.data.images, first.data.texts, work / "features", progress=False)
        if "paired-logit-distillation" in arms:  # the only arm that reads the captions' teacher embeddings
            _cache_caption_embeds(teacher, _paired_images(settings["samples"]), work / CAPTION_EMBEDS)
        jobs = [(arm, seed) for seed in settings["seeds"] for arm in arms]
        threads = 1 if args.workers > 1 else torch.get_num_threads()
        arguments = [(arm, seed, settings, str(features), workdir, threads,
                      arm == "dime-fm" and seed == settings["seeds"][0], args.teacher) for arm, seed in jobs]
        if args.workers > 1:
            with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                outcomes = list(pool.map(_run_arm, *zip(*arguments)))
        else:
            outcomes = [_run_arm(*values) for values in arguments]
        for outcome in outcomes:
            results[outcome.pop("arm")].append(outcome)
        student = DimeFmModel.from_pretrained(work / "student").eval()
    teacher_accuracy = zero_shot(teacher.model)
    pixels = pixel_tensor(teacher.processor, splits["zero_shot"].select(range(128)))
    timings = {"student": [], "teacher": []}
    for _ in range(5):  # interleaved repeats on a shared machine
        timings["student"].append(seconds_per_image(student, pixels, repeats=1))
        timings["teacher"].append(seconds_per_image(teacher.model, pixels, repeats=1))
    student_params, teacher_params = vision_parameter_count(student), vision_parameter_count(teacher.model)

    text_params = text_parameter_count(student), text_parameter_count(teacher.model)

    def mean(arm, key="zero_shot_accuracy"):
        return statistics.mean(r[key] for r in results[arm])

    def spread(arm, key="zero_shot_accuracy"):
        values = [r[key] for r in results[arm]]
        return statistics.stdev(values) if len(values) > 1 else 0.0

    dime = mean("dime-fm")
    two_stage = mean("dime-fm", "two_stage_zero_shot_accuracy")
    summary = {
        "vision_parameter_ratio": student_params / teacher_params,
        "text_parameter_ratio": text_params[0] / text_params[1],
        "two_stage_zero_shot_ratio": two_stage / teacher_accuracy,
        "time_per_image_ratio": statistics.median(timings["student"]) / statistics.median(timings["teacher"]),
        "zero_shot_ratio": dime / teacher_accuracy,
        "targets": {
            "at_most_quarter_of_vision_parameters": student_params / teacher_params <= 0.25,
            "at_least_90_percent_of_zero_shot": dime / teacher_accuracy >= 0.9,
            **{f"ahead_of_{arm.replace('-', '_')}": dime > mean(arm) for arm in arms if arm != "dime-fm"},
        },
    }
    rows = [("model", "data used", "vision params", "ms / image", "zero-shot top-1 (mean +- sd)", "vs teacher")]
    rows.append((f"teacher ({teacher.teacher_id})", "20,000 pairs + 32,000 labelled images", f"{teacher_params:,}",
                 f"{statistics.median(timings['teacher']) * 1e3:.3f}", f"{teacher_accuracy:.3f}", "1.000"))
    data = {"dime-fm": f"{settings['samples']:,} single-object images + {settings['samples']:,} scene texts, unpaired",
            "contrastive-from-scratch": f"the same {settings['samples']:,} images with their captions",
            "paired-logit-distillation": f"the same {settings['samples']:,} pairs + teacher logits"}
    for arm in arms:
        rows.append((arm, data[arm], f"{student_params:,}",
                     f"{statistics.median(timings['student']) * 1e3:.3f}" if arm == "dime-fm" else "same",
                     f"{mean(arm):.3f} +- {spread(arm):.3f}", f"{mean(arm) / teacher_accuracy:.3f}"))
    rows.append((f"dime-fm + distilled text tower ({text_params[0]:,} text params, "
                 f"{text_params[0] / text_params[1]:.2f} of the teacher's)", "the same, then the same texts",
                 f"{student_params:,}", "same",
                 f"{two_stage:.3f} +- {spread('dime-fm', 'two_stage_zero_shot_accuracy'):.3f}",
                 f"{two_stage / teacher_accuracy:.3f}"))
    print(text_table(rows))
    for name, met in summary["targets"].items():
        print(f"  {name.replace('_', ' ')}: {'met' if met else 'MISSED'}")
    result = {
        "benchmark": "dime_fm", "quick": args.quick, "settings": settings, "steps": first.train.steps,
        "workers": args.workers,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average": os.getloadavg()},
        "teacher": {"id": teacher.teacher_id, "zero_shot_accuracy": teacher_accuracy,
                    "vision_parameters": teacher_params, "seconds_per_image": timings["teacher"]},
        "student": {"vision_parameters": student_params, "seconds_per_image": timings["student"],
                    "text_parameters": text_params[0], "teacher_text_parameters": text_params[1]},
        "arms": results, "data": data, "summary": summary, "wall_seconds": time.perf_counter() - start,
    }
    output = args.output or RESULTS_DIR / ("dime_fm-quick.json" if args.quick else "dime_fm.json")
    atomic_write_json(output, json.loads(json.dumps(result)))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
