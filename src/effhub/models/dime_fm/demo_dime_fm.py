"""`effhub demo dime-fm`: DIME-FM end to end on the shipped clip-teacher and the generated caption world.

Cache the teacher's features of unpaired images and texts → distil the student from them → student and teacher side
by side (zero-shot, retrieval, linear probe, vision parameters, time per image) → export as a plain `CLIPModel`
(identical embeddings) → push to a local hub, reload by repo id in a new process and classify an image with
`pipeline("zero-shot-image-classification")` there. Exits non-zero when the reloaded model's embeddings or the export
differ from the trained student's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ...tables import text_table

DEMO_REPO_ID = "effhub/dime-fm-demo"
TOLERANCE = 1e-5

# Runs in a new interpreter: only the Hub endpoint, the repo id and the saved inputs connect it to the caller.
RELOAD_SCRIPT = """
import json, sys, torch, effhub
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import AutoModel, pipeline
repo_id, inputs_path, image_path, labels, outputs_path = sys.argv[1:6]
model = AutoModel.from_pretrained(repo_id).eval()
with torch.no_grad():
    embeds = model(pixel_values=load_file(inputs_path)["pixel_values"]).image_embeds
save_file({"image_embeds": embeds.contiguous()}, outputs_path)
classifier = pipeline("zero-shot-image-classification", model=repo_id)
print(json.dumps({"class": type(model).__name__,
                  "pipeline": classifier(Image.open(image_path), candidate_labels=labels.split("|"))[:3]}))
"""


def side_by_side_table(metrics: dict) -> str:
    """Student and teacher on every figure, with the student/teacher ratio."""
    s, t = metrics["student"], metrics["teacher"]
    rows = [("figure", "student", "teacher", "student / teacher")]

    def add(name, a, b, digits=3):
        rows.append((name, f"{a:.{digits}f}" if isinstance(a, float) else f"{a:,}",
                     f"{b:.{digits}f}" if isinstance(b, float) else f"{b:,}", f"{a / b:.3f}" if b else "-"))

    add("vision parameters", s["vision_parameters"], t["vision_parameters"])
    add("text parameters", s["text_parameters"], t["text_parameters"])
    add("ms per image", s["seconds_per_image"] * 1e3, t["seconds_per_image"] * 1e3)
    add("zero-shot top-1", s["zero_shot"]["accuracy"], t["zero_shot"]["accuracy"])
    add("zero-shot top-5", s["zero_shot"]["top5_accuracy"], t["zero_shot"]["top5_accuracy"])
    if "zero_shot_with_teacher_text" in s:  # a distilled text tower: the student's images, the teacher's prompts
        add("zero-shot top-1, teacher's text", s["zero_shot_with_teacher_text"]["accuracy"], t["zero_shot"]["accuracy"])
    for key in ("image_to_text_r@1", "image_to_text_r@5", "text_to_image_r@1", "text_to_image_r@5"):
        add(key.replace("_", " "), s["retrieval"][key], t["retrieval"][key])
    add("linear probe top-1", s["linear_probe"]["accuracy"], t["linear_probe"]["accuracy"])
    return text_table(rows)


def reload_and_classify(run_dir: Path, hub_root: Path, pixel_values, image, labels: list[str]):
    """Push `run_dir` to a local hub, reload it by repo id in a new process; `(image embeds, pipeline output)`."""
    from safetensors.torch import load_file, save_file

    from ...hub.publish import push_folder
    from ...hub.server import LocalHubServer

    with LocalHubServer(hub_root) as hub, tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        print(f"      local hub at {hub.url}; pushing {run_dir} to {DEMO_REPO_ID}")
        push_folder(run_dir, DEMO_REPO_ID, endpoint=hub.url)
        save_file({"pixel_values": pixel_values.contiguous()}, str(work / "inputs.safetensors"))
        image.save(work / "image.png")
        environment = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(work / "hf-home"),
                       "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "0"}
        completed = subprocess.run(
            [sys.executable, "-c", RELOAD_SCRIPT, DEMO_REPO_ID, str(work / "inputs.safetensors"),
             str(work / "image.png"), "|".join(labels), str(work / "outputs.safetensors")],
            env=environment, capture_output=True, text=True, timeout=600)
        if completed.returncode != 0:
            raise RuntimeError(f"reloading {DEMO_REPO_ID} in a new process failed:\n{completed.stderr[-3000:]}")
        report = json.loads(completed.stdout.strip().splitlines()[-1])
        return load_file(str(work / "outputs.safetensors"))["image_embeds"], report


def run_demo(options) -> int:
    """Run the DIME-FM demo into `options.output_dir` (`effhub.training.DemoOptions`); returns the exit status."""
    import torch
    from transformers import CLIPModel

    from ...recipes import load_recipe
    from ...training import RunOptions
    from .convert_dime_fm import export_clip
    from .features_dime_fm import cache_features, load_teacher
    from .modeling_dime_fm import DimeFmModel
    from .training_dime_fm import evaluation_splits, pixel_tensor, train

    output_dir = Path(options.output_dir) / "dime-fm"
    recipe = load_recipe("dime-fm", "demo", options.overrides)
    features, run_dir = output_dir / "features", output_dir / "run"
    start = time.perf_counter()
    print(f"[1/5] caching the teacher's features of {recipe.data.images} images and {recipe.data.texts} texts "
          f"(teacher {recipe.teacher}) into {features}")
    teacher = load_teacher(recipe.teacher)
    cache_features(teacher, recipe.data.images, recipe.data.texts, features, recipe.data.image_column,
                   recipe.data.text_column)
    print(f"      {time.perf_counter() - start:.0f} s")
    print(f"[2/5] distilling a {recipe.student.layers}-layer, width-{recipe.student.hidden_size} student for "
          f"{recipe.train.steps} steps (unpaired batches of {recipe.train.image_batch_size} images and "
          f"{recipe.train.text_batch_size} texts), then evaluating it beside the teacher")
    recipe.features = str(features)
    train(recipe, RunOptions(output_dir=run_dir, overwrite=True))
    side = json.loads((run_dir / "eval_results.json").read_text())["extra"]["side_by_side"]
    print(f"      {time.perf_counter() - start:.0f} s; card: {run_dir / 'README.md'}")
    print(side_by_side_table(side))
    ratio = side["ratios"]
    print(f"      the student has {ratio['vision_parameters']:.2f} of the teacher's vision parameters and "
          f"{ratio['zero_shot_accuracy']:.1%} of its zero-shot accuracy (targets: <= 0.25 and >= 90%)")

    print(f"[3/5] exporting as a plain CLIPModel to {output_dir / 'clip'}")
    export_clip(run_dir, output_dir / "clip")
    world, splits = evaluation_splits(recipe)
    pixels = pixel_tensor(teacher.processor, splits["zero_shot"].select(range(4)))
    student = DimeFmModel.from_pretrained(run_dir).eval()
    clip = CLIPModel.from_pretrained(output_dir / "clip").eval()
    with torch.no_grad():
        expected = student.image_embeddings(pixels)
        exported = clip.get_image_features(pixel_values=pixels).pooler_output
    export_difference = (expected - exported / exported.norm(dim=-1, keepdim=True)).abs().max().item()
    print(f"      exported embeddings differ by {export_difference:.3g}")

    print("[4/5] pushing to a local hub and reloading by repo id in a new process")
    image = splits["zero_shot"][0]["image"]
    true_label = world.class_names[splits["zero_shot"][0]["label"]]
    labels = [world.class_phrase(name) for name in world.class_names]
    reloaded, report = reload_and_classify(run_dir, output_dir / "hub", pixels, image, labels)
    reload_difference = (reloaded - expected).abs().max().item()
    print(f"      reloaded {report['class']}; embeddings differ by {reload_difference:.3g}")
    print(f"[5/5] zero-shot pipeline in the new process on an image of a {true_label}: " + ", ".join(
        f"{row['label']} {row['score']:.2f}" for row in report["pipeline"]))
    print(f"      demo wall time {time.perf_counter() - start:.0f} s")
    if export_difference > TOLERANCE or reload_difference > TOLERANCE:
        print(f"FAILED: export or reload changed the embeddings (> {TOLERANCE})")
        return 1
    print("OK: the exported and reloaded students give the trained student's embeddings")
    return 0


__all__ = ["DEMO_REPO_ID", "side_by_side_table", "reload_and_classify", "run_demo"]
