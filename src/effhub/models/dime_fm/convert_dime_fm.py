"""Conversions of DIME-FM students: the authors' checkpoint layout in, a plain `CLIPModel` folder out.

- `convert` (`effhub convert dime-fm <checkpoint> --recipe <r> --teacher <t> --output <folder>`): the authors'
  student checkpoints store the vision tower in OpenAI CLIP's layout (`visual.conv1.weight`,
  `visual.transformer.resblocks.<i>.attn.in_proj_weight`, ..., the projection as `visual.proj` or
  `vision_projection`, possibly under `image_state_dict` and a DataParallel `module.` prefix); the text tower is
  the teacher's. The result is an effhub student folder (`DimeFmModel` + the teacher's processor).
- `export` / `export_clip` (`effhub export <run> --format clip --output <folder>`): the student as a plain
  `transformers.CLIPModel` (same weight names, a `clip` config), loadable without effhub, with identical embeddings.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ...errors import CheckpointError, ConfigError

EXPORT_FORMATS = ("clip",)
PROCESSOR_FILES = ("processor_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "preprocessor_config.json")
_LAYER_NAMES = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
                "attn.out_proj": "self_attn.out_proj"}


# ---------------------------------------------------------------------------------------------------- export
def export_clip(run_dir, output) -> Path:
    """Write the student of `run_dir` as a plain `CLIPModel` folder (weights, config, processor files) to `output`."""
    from ..loading import load_pretrained
    from .modeling_dime_fm import DimeFmModel

    run_dir, output = Path(run_dir), Path(output)
    if not (run_dir / "config.json").is_file():
        raise CheckpointError(f"'{run_dir}' holds no config.json", "pass a dime-fm run folder or student folder")
    if output.resolve() == run_dir.resolve():
        raise ConfigError("the export would overwrite the run folder", "pass another --output folder")
    clip = load_pretrained(DimeFmModel, run_dir).to_clip()
    output.mkdir(parents=True, exist_ok=True)
    clip.save_pretrained(output)
    for name in PROCESSOR_FILES:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, output / name)
    return output


def export(run_dir, format: str, output) -> Path:
    """`effhub export <run> --format <format> --output <folder>`."""
    if format not in EXPORT_FORMATS:
        raise ConfigError(f"export format {format!r} is not offered by dime-fm", f"use one of {list(EXPORT_FORMATS)}")
    return export_clip(run_dir, output)


# ---------------------------------------------------------------------------------------------------- convert
def _unwrap(state: dict) -> dict:
    for key in ("image_state_dict", "state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
    return {key[len("module."):] if key.startswith("module.") else key: value for key, value in state.items()}


def openai_vision_to_hf(state: dict) -> tuple[dict, dict]:
    """`(hf state dict, CLIPVisionConfig values)` of a vision tower in OpenAI CLIP's layout (`visual.*` keys, the
    projection as `visual.proj` or `vision_projection`, shape `(width, joint dim)`).

    Raises:
        `CheckpointError`: a key of the layout is missing.
    """
    import torch

    state = _unwrap(state)
    try:
        conv = state["visual.conv1.weight"]
        positions = state["visual.positional_embedding"]
        projection = state["visual.proj"] if "visual.proj" in state else state["vision_projection"]
    except KeyError as error:
        raise CheckpointError(f"the checkpoint has no '{error.args[0]}' (not OpenAI CLIP's vision layout)",
                              "pass the authors' student checkpoint (visual.* keys)") from error
    width, _, patch, _ = conv.shape
    grid = int(round((positions.shape[0] - 1) ** 0.5))
    layers = 1 + max(int(key.split(".")[3]) for key in state if key.startswith("visual.transformer.resblocks."))
    hf = {
        "vision_model.embeddings.class_embedding": state["visual.class_embedding"],
        "vision_model.embeddings.position_embedding.weight": positions,
        "vision_model.embeddings.patch_embedding.weight": conv,
        "vision_model.pre_layrnorm.weight": state["visual.ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": state["visual.ln_pre.bias"],
        "vision_model.post_layernorm.weight": state["visual.ln_post.weight"],
        "vision_model.post_layernorm.bias": state["visual.ln_post.bias"],
        "visual_projection.weight": projection.T.contiguous(),
    }
    for index in range(layers):
        source, target = f"visual.transformer.resblocks.{index}.", f"vision_model.encoder.layers.{index}."
        for name, value in zip(("q_proj", "k_proj", "v_proj"), torch.chunk(state[source + "attn.in_proj_weight"], 3)):
            hf[f"{target}self_attn.{name}.weight"] = value.contiguous()
        for name, value in zip(("q_proj", "k_proj", "v_proj"), torch.chunk(state[source + "attn.in_proj_bias"], 3)):
            hf[f"{target}self_attn.{name}.bias"] = value.contiguous()
        for old, new in _LAYER_NAMES.items():
            for kind in ("weight", "bias"):
                hf[f"{target}{new}.{kind}"] = state[f"{source}{old}.{kind}"]
    config = {"hidden_size": int(width), "intermediate_size": int(hf["vision_model.encoder.layers.0.mlp.fc1.weight"]
                                                                  .shape[0]),
              "num_hidden_layers": layers, "image_size": int(grid * patch), "patch_size": int(patch),
              "projection_dim": int(projection.shape[1]), "hidden_act": "quick_gelu"}
    return hf, config


def load_checkpoint(path) -> dict:
    """A state dict from a safetensors or torch file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist", "pass the authors' checkpoint file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"checkpoint '{path}' cannot be read ({error})",
                              "download or copy it again") from error


def convert_state(state: dict, teacher, heads: int | None = None, teacher_name_or_path: str | None = None):
    """A `DimeFmModel` holding the vision tower of `state` (OpenAI layout) and `teacher`'s text tower."""
    from .modeling_dime_fm import DimeFmModel

    hf, vision_config = openai_vision_to_hf(state)
    width = vision_config["hidden_size"]
    vision_config["num_attention_heads"] = heads or (width // 64 if width % 64 == 0 else 1)
    if vision_config.pop("projection_dim") != teacher.config.projection_dim:
        raise ConfigError(f"the checkpoint projects into {hf['visual_projection.weight'].shape[0]} dimensions, the "
                          f"teacher's joint space has {teacher.config.projection_dim}",
                          "pass the teacher the student was distilled from (--teacher)")
    student = DimeFmModel.from_teacher(teacher, vision_config, teacher_name_or_path=teacher_name_or_path)
    missing, unexpected = student.load_state_dict(hf, strict=False)
    missing = [key for key in missing if key.startswith(("vision_model.", "visual_projection."))
               and not key.endswith("position_ids")]
    if missing or unexpected:
        raise CheckpointError(f"the converted checkpoint does not fit the student (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]})", "check the checkpoint's layout")
    return student.eval()


def convert(source, options) -> Path:
    """`effhub convert dime-fm <checkpoint> --recipe <r> [--teacher <t>] --output <folder>`."""
    from ...recipes import load_recipe
    from ..clip_teacher.processing import save_clip_processor
    from .features_dime_fm import load_teacher

    recipe = load_recipe("dime-fm", options.recipe, options.overrides)
    teacher = load_teacher(options.extra.get("teacher") or recipe.teacher)
    student = convert_state(load_checkpoint(source), teacher.model, recipe.student.heads, teacher.teacher_id)
    output = Path(options.output)
    student.save_pretrained(output)
    save_clip_processor(teacher.processor, output)
    return output


__all__ = ["EXPORT_FORMATS", "export_clip", "export", "openai_vision_to_hf", "load_checkpoint", "convert_state",
           "convert"]
