"""Train a clip-teacher recipe in this process: the recipe's single contrastive phase as a plain loop.

It uses the package's own pieces (world, tokenizer, config, collator, loss, parameter groups, schedule, temperature
clamp) with the recipe's values, on one process, and saves a transformers folder (model, processor, `recipe.json`,
`training.json`). `effhub train clip-teacher --recipe <name>` runs the same phase under the phased trainer; this loop
exists so that the benchmark (and the shipped weights) do not depend on the run layer, and so that it can time the
training alone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def train_teacher(recipe, output_dir, log_every: int = 50, threads: int | None = None) -> dict:
    """Train `recipe` (a `CLIPTeacherRecipe`) and save the teacher into `output_dir`; returns the training record."""
    import numpy as np
    import torch

    from effhub.data.captions import SPLIT_NAMES
    from effhub.models.clip_teacher.evaluation import images_to_uint8
    from effhub.models.clip_teacher.processing import build_clip_processor, save_clip_processor
    from effhub.models.clip_teacher.training_clip_teacher import (
        MAX_LOGIT_SCALE, ClipCollator, ClipPairs, _optimizer, _scheduler, build_model, build_tokenizer, build_world,
        contrastive_loss,
    )
    from effhub.recipes import recipe_to_dict

    if threads:
        torch.set_num_threads(threads)
    started = time.time()
    world = build_world(recipe)
    pairs = world.pairs(recipe.world.train_pairs, seed=recipe.world.seed, split=SPLIT_NAMES["teacher"]["train"])
    tokenizer = build_tokenizer(world, recipe, pairs["caption"])
    data_seconds = time.time() - started
    torch.manual_seed(recipe.seed)
    model = build_model(tokenizer, world.config.image_size, recipe)
    dataset = ClipPairs(images_to_uint8(pairs["image"]), pairs["caption"])
    collate = ClipCollator(tokenizer, world.shape_swapped if recipe.train.shape_negatives else None, recipe.seed)
    optimizer = _optimizer(list(model.parameters()), recipe, model)
    scheduler = _scheduler(optimizer, recipe.train.steps, recipe.train.warmup_steps)
    rng = np.random.default_rng(recipe.seed)
    order, cursor = rng.permutation(len(dataset)), 0
    initial_scale = float(model.logit_scale.detach().exp())
    log = []
    model.train()
    train_started = time.time()
    for step in range(recipe.train.steps):
        if cursor + recipe.train.batch_size > len(order):
            order, cursor = rng.permutation(len(dataset)), 0
        batch = collate([dataset[int(i)] for i in order[cursor: cursor + recipe.train.batch_size]])
        cursor += recipe.train.batch_size
        output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       pixel_values=batch["pixel_values"])
        loss = contrastive_loss(output.logits_per_image)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.train.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            model.logit_scale.clamp_(max=MAX_LOGIT_SCALE)
        if (step + 1) % log_every == 0 or step + 1 == recipe.train.steps:
            entry = {"step": step + 1, "loss": round(float(loss), 4), "logit_scale": round(float(model.logit_scale.exp()), 2),
                     "seconds": round(time.time() - train_started, 1)}
            log.append(entry)
            print(json.dumps(entry), flush=True)
    record = {
        "data_and_tokenizer_seconds": round(data_seconds, 1),
        "training_seconds": round(time.time() - train_started, 1),
        "steps": recipe.train.steps,
        "threads": torch.get_num_threads(),
        "logit_scale_initial": round(initial_scale, 2),
        "logit_scale_final": round(float(model.logit_scale.exp()), 2),
        "parameters": sum(p.numel() for p in model.parameters()),
        "log": log,
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    save_clip_processor(build_clip_processor(tokenizer, world.config.image_size), output_dir)
    (output_dir / "recipe.json").write_text(json.dumps(recipe_to_dict(recipe), indent=2) + "\n")
    (output_dir / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
