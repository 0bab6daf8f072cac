"""The converter from the authors' checkpoint layout (OpenAI CLIP `visual.*` keys) on a state dict built in that
layout by hand from a known student: the converted student gives the same embeddings."""

import pytest
import torch
from transformers import CLIPConfig, CLIPModel

from effhub.errors import CheckpointError, ConfigError
from effhub.models.dime_fm import DimeFmModel
from effhub.models.dime_fm.convert_dime_fm import convert_state, load_checkpoint, openai_vision_to_hf

WIDTH, LAYERS, PATCH, IMAGE, DIM = 128, 2, 8, 16, 10


def teacher():
    torch.manual_seed(3)
    config = CLIPConfig(text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "vocab_size": 30, "max_position_embeddings": 8,
                                     "bos_token_id": 28, "eos_token_id": 29, "pad_token_id": 29},
                        vision_config={"hidden_size": 16, "num_attention_heads": 2, "image_size": IMAGE,
                                       "patch_size": PATCH}, projection_dim=DIM)
    return CLIPModel(config).eval()


def openai_layout(student) -> dict:
    """The authors' layout of `student`'s vision tower, written key by key (OpenAI CLIP's VisionTransformer)."""
    sd = student.state_dict()
    out = {"visual.conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
           "visual.class_embedding": sd["vision_model.embeddings.class_embedding"],
           "visual.positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
           "visual.ln_pre.weight": sd["vision_model.pre_layrnorm.weight"],
           "visual.ln_pre.bias": sd["vision_model.pre_layrnorm.bias"],
           "visual.ln_post.weight": sd["vision_model.post_layernorm.weight"],
           "visual.ln_post.bias": sd["vision_model.post_layernorm.bias"],
           "vision_projection": sd["visual_projection.weight"].T}
    for i in range(LAYERS):
        h, o = f"vision_model.encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        out[o + "attn.in_proj_weight"] = torch.cat([sd[h + f"self_attn.{n}_proj.weight"] for n in "qkv"])
        out[o + "attn.in_proj_bias"] = torch.cat([sd[h + f"self_attn.{n}_proj.bias"] for n in "qkv"])
        out[o + "attn.out_proj.weight"] = sd[h + "self_attn.out_proj.weight"]
        out[o + "attn.out_proj.bias"] = sd[h + "self_attn.out_proj.bias"]
        for a, b in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"),
                     ("mlp.c_proj", "mlp.fc2")):
            out[f"{o}{a}.weight"], out[f"{o}{a}.bias"] = sd[f"{h}{b}.weight"], sd[f"{h}{b}.bias"]
    # the authors' training checkpoint wraps the tower (DataParallel prefix)
    return {"image_state_dict": {f"module.{k}": v.clone() for k, v in out.items()}}


def test_converted_checkpoint_gives_the_original_embeddings(tmp_path):
    t = teacher()
    vision = {"hidden_size": WIDTH, "intermediate_size": 2 * WIDTH, "num_hidden_layers": LAYERS,
              "num_attention_heads": 2, "image_size": IMAGE, "patch_size": PATCH, "hidden_act": "quick_gelu"}
    torch.manual_seed(0)
    original = DimeFmModel.from_teacher(t, vision).eval()
    torch.save(openai_layout(original), tmp_path / "checkpoint.pth")
    converted = convert_state(load_checkpoint(tmp_path / "checkpoint.pth"), t, heads=2)
    pixels = torch.randn(3, 3, IMAGE, IMAGE)
    with torch.no_grad():
        assert torch.allclose(converted.image_embeddings(pixels), original.image_embeddings(pixels), atol=1e-5)
    assert converted.config.vision_config.num_hidden_layers == LAYERS
    assert converted.config.vision_config.hidden_size == WIDTH


def test_inferred_config_and_bad_checkpoints(tmp_path):
    t = teacher()
    vision = {"hidden_size": WIDTH, "intermediate_size": 2 * WIDTH, "num_hidden_layers": LAYERS,
              "num_attention_heads": 2, "image_size": IMAGE, "patch_size": PATCH}
    state = openai_layout(DimeFmModel.from_teacher(t, vision))
    _, config = openai_vision_to_hf(state)
    assert (config["image_size"], config["patch_size"], config["projection_dim"]) == (IMAGE, PATCH, DIM)
    with pytest.raises(CheckpointError, match="visual.conv1.weight"):
        openai_vision_to_hf({"text.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")
    wrong = {k: v for k, v in state["image_state_dict"].items()}
    wrong["module.vision_projection"] = torch.zeros(WIDTH, DIM + 2)
    with pytest.raises(ConfigError, match="joint space"):
        convert_state(wrong, t, heads=2)
