"""DualCoOp as a PEFT method: registration, the exact prompt text path, the MaskCLIP value path, the dual logits,
saving and loading (also by repo id from the local hub in a new process), unload and disable_adapter."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors import safe_open
from transformers import CLIPConfig, CLIPModel

import effhub  # noqa: F401  (registers the PEFT type)
from effhub import DualCoOpConfig
from effhub.adapters.dualcoop.layer import dual_logits, encode_prompts, pad_class_tokens, region_features
from effhub.adapters.dualcoop.model import class_token_ids, load_tokenizer
from effhub.errors import ConfigError
from effhub.models.clip_teacher.weights import load_base_teacher

NAMES = ["red circle", "blue square", "green star"]


def teacher():
    clip, processor = load_base_teacher()
    return clip, processor.tokenizer


def adapted(names=NAMES, **kwargs):
    clip, _ = teacher()
    torch.manual_seed(0)
    return get_peft_model(clip, DualCoOpConfig(class_names=list(names), **kwargs))


def images(n=3, seed=0):
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_registered_type_and_trainable_parameters():
    from peft.utils import PeftType

    model = adapted(n_ctx=16)
    assert PeftType.EFFHUB_DUALCOOP.value == "EFFHUB_DUALCOOP"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert trainable == 2 * 16 * 96
    assert trainable / (total - trainable) < 0.005
    config = model.peft_config["default"]
    assert config.tokenizer == "effhub-shipped:base" and config.base_model_name_or_path == "effhub-shipped:base"
    assert config.text_width == 96 and config.scale_source == "base_logit_scale"
    scale = float(model.get_base_model().logit_scale.exp())
    assert config.logit_scale == 5.0 and config.region_temperature == pytest.approx(20 * scale / 100)


@pytest.mark.parametrize("names", [NAMES, ["red circle", "circle", "pink crescent"]])
def test_prompt_text_path_equals_get_text_features_for_real_words(names):
    clip, tokenizer = teacher()
    words = "a photo of a"
    context_ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    context = clip.text_model.embeddings.token_embedding.weight[torch.tensor(context_ids)]
    ids, lengths = pad_class_tokens(class_token_ids(tokenizer, names), tokenizer.eos_token_id)
    with torch.no_grad():
        ours = encode_prompts(clip, context, ids, lengths, tokenizer.bos_token_id, tokenizer.eos_token_id)
        length = 2 + len(context_ids) + ids.shape[1]
        encoded = tokenizer([f"{words} {name}." for name in names], padding="max_length", max_length=length,
                            return_tensors="pt")
        reference = clip.get_text_features(**encoded).pooler_output
    assert torch.equal(ours, reference)


def test_adapter_contexts_initialised_from_words_give_the_word_prompts():
    model = adapted(n_ctx=4, ctx_init_pos="a photo of a", ctx_init_neg="a photo of a")
    clip = model.get_base_model()
    tokenizer = load_tokenizer("effhub-shipped:base")
    with torch.no_grad():
        text = model(pixel_values=images(1)).text_embeds
        reference = clip.get_text_features(**tokenizer([f"a photo of a {n}." for n in NAMES], padding=True,
                                                       return_tensors="pt")).pooler_output
    reference = reference / reference.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(text[len(NAMES):], reference, rtol=0, atol=1e-6)


def tiny_clip(width=4, projection=3):
    config = CLIPConfig(
        text_config={"vocab_size": 10, "hidden_size": width, "intermediate_size": 8, "num_hidden_layers": 1,
                     "num_attention_heads": 1, "max_position_embeddings": 8, "bos_token_id": 8, "eos_token_id": 9,
                     "pad_token_id": 9, "projection_dim": projection},
        vision_config={"hidden_size": width, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1,
                       "image_size": 4, "patch_size": 2, "projection_dim": projection},
        projection_dim=projection)
    torch.manual_seed(1)
    return CLIPModel(config).eval()


def layer_norm(x, gain, bias, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * gain + bias


def test_maskclip_value_path_against_a_hand_computation():
    clip = tiny_clip()
    pixels = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = region_features(clip, pixels, "values").numpy()[0]
    w = {name: p.detach().numpy().astype(np.float64) for name, p in clip.named_parameters()}
    v = "vision_model."
    # patch embedding: 2x2 patches of a 4x4 image, row-major, a convolution without bias
    kernel = w[v + "embeddings.patch_embedding.weight"]
    image = pixels.numpy()[0].astype(np.float64)
    patches = [np.einsum("chw,ochw->o", image[:, r:r + 2, c:c + 2], kernel) for r in (0, 2) for c in (0, 2)]
    tokens = np.stack([w[v + "embeddings.class_embedding"], *patches]) + w[v + "embeddings.position_embedding.weight"]
    hidden = layer_norm(tokens, w[v + "pre_layrnorm.weight"], w[v + "pre_layrnorm.bias"])
    block = v + "encoder.layers.0."
    normed = layer_norm(hidden, w[block + "layer_norm1.weight"], w[block + "layer_norm1.bias"])
    values = normed @ w[block + "self_attn.v_proj.weight"].T + w[block + "self_attn.v_proj.bias"]
    mixed = values @ w[block + "self_attn.out_proj.weight"].T + w[block + "self_attn.out_proj.bias"]
    projected = layer_norm(mixed[1:], w[v + "post_layernorm.weight"], w[v + "post_layernorm.bias"]) @ \
        w["visual_projection.weight"].T
    np.testing.assert_allclose(ours, projected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        tokens_mode = region_features(clip, pixels, "tokens")
        expected = clip.visual_projection(clip.vision_model.post_layernorm(
            clip.vision_model(pixel_values=pixels).last_hidden_state[:, 1:]))
    torch.testing.assert_close(tokens_mode, expected)


def test_dual_logits_aggregate_with_the_positive_spatial_softmax():
    regions = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])            # 2 regions
    text = torch.tensor([[0.0, 1.0], [1.0, 0.0]])                 # negative prompt, positive prompt of 1 class
    logits, weights = dual_logits(regions, text, region_temperature=2.0, logit_scale=3.0)
    w = torch.softmax(torch.tensor([2.0, 0.0]), 0)                # positive map: cos 1 and 0, times 2
    assert torch.allclose(weights[0, 0], w)
    assert torch.allclose(logits[0, 1, 0], 3 * (w * torch.tensor([2.0, 0.0])).sum())
    assert torch.allclose(logits[0, 0, 0], 3 * (w * torch.tensor([0.0, 2.0])).sum())


def test_forward_shapes_zero_shot_and_class_specific():
    model = adapted(n_ctx=8)
    out = model(pixel_values=images(2))
    assert out.logits.shape == (2, 2, 3) and out.probs.shape == (2, 3)
    torch.testing.assert_close(out.probs, out.logits.softmax(dim=1)[:, 1])
    zero_shot = model(pixel_values=images(2), class_names=["pink crescent", "blue square"])
    assert zero_shot.logits.shape == (2, 2, 2)
    # a class scored alone or among others gets the same probability
    torch.testing.assert_close(zero_shot.probs[:, 1], out.probs[:, 1], rtol=0, atol=1e-6)
    specific = adapted(n_ctx=4, class_specific=True)
    assert specific.get_base_model().text_model.embeddings.token_embedding.dualcoop_ctx_pos["default"].shape == \
        (3, 4, 96)
    assert specific(pixel_values=images(1), class_names=["green star", "red circle"]).logits.shape == (1, 2, 2)
    with pytest.raises(ConfigError, match="class-specific"):
        specific(pixel_values=images(1), class_names=["pink crescent"])


def test_save_holds_only_the_contexts_and_reloads_exactly(tmp_path):
    model = adapted(n_ctx=8)
    with torch.no_grad():
        model.get_base_model().text_model.embeddings.token_embedding.dualcoop_ctx_pos["default"].add_(0.5)
        expected = model(pixel_values=images()).logits
    model.save_pretrained(tmp_path / "adapter")
    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
    assert [key.rsplit(".", 1)[-1] for key in keys] == ["dualcoop_ctx_neg", "dualcoop_ctx_pos"]
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "EFFHUB_DUALCOOP" and saved["class_names"] == NAMES
    assert saved["class_token_ids"] and "/" not in saved["tokenizer"]
    clip, _ = teacher()
    reloaded = PeftModel.from_pretrained(clip, tmp_path / "adapter")
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values=images()).logits, expected)


RELOAD = """
import sys, torch, effhub
from peft import PeftModel
from safetensors.torch import load_file, save_file
from effhub.models.clip_teacher.weights import load_base_teacher
repo_id, inputs, outputs = sys.argv[1:4]
model = PeftModel.from_pretrained(load_base_teacher()[0], repo_id).eval()
with torch.no_grad():
    save_file({"logits": model(pixel_values=load_file(inputs)["pixel_values"]).logits.contiguous()}, outputs)
"""


def test_peft_from_pretrained_by_repo_id_in_a_new_process(tmp_path, hub_repo_id, subprocess_env):
    from safetensors.torch import load_file, save_file

    model = adapted(n_ctx=8)
    with torch.no_grad():
        model.get_base_model().text_model.embeddings.token_embedding.dualcoop_ctx_neg["default"].mul_(3)
        expected = model(pixel_values=images()).logits
    model.push_to_hub(hub_repo_id)
    save_file({"pixel_values": images()}, str(tmp_path / "inputs.safetensors"))
    completed = subprocess.run([sys.executable, "-c", RELOAD, hub_repo_id, str(tmp_path / "inputs.safetensors"),
                                str(tmp_path / "outputs.safetensors")], env=subprocess_env, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert torch.equal(load_file(str(tmp_path / "outputs.safetensors"))["logits"], expected)


def test_loading_without_import_effhub_names_effhub(tmp_path, subprocess_env):
    adapted(n_ctx=2).save_pretrained(tmp_path / "adapter")
    script = ("import sys\nfrom peft import PeftModel\nfrom transformers import CLIPModel\n"
              "PeftModel.from_pretrained(CLIPModel.from_pretrained(sys.argv[2]), sys.argv[1])\n")
    from effhub.models.clip_teacher.weights import base_teacher_path

    completed = subprocess.run([sys.executable, "-c", script, str(tmp_path / "adapter"), str(base_teacher_path())],
                               env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert completed.returncode != 0
    assert "EFFHUB_DUALCOOP" in completed.stderr.splitlines()[-1]


def test_unload_and_disable_adapter_restore_clips_forward():
    clip, tokenizer = teacher()
    text = tokenizer(["a photo of a red circle."], return_tensors="pt")
    with torch.no_grad():
        expected = clip(pixel_values=images(2), **text).logits_per_image
    model = get_peft_model(clip, DualCoOpConfig(class_names=NAMES, n_ctx=4))
    with torch.no_grad(), model.disable_adapter():
        assert torch.equal(model(pixel_values=images(2), **text).logits_per_image, expected)
    with torch.no_grad():
        assert model(pixel_values=images(2)).logits.shape == (2, 2, 3)
    base = model.unload()
    assert "forward" not in base.__dict__
    assert type(base.text_model.embeddings.token_embedding).__name__ == "Embedding"
    with torch.no_grad():
        assert torch.equal(base(pixel_values=images(2), **text).logits_per_image, expected)
    with pytest.raises(ConfigError, match="merge"):
        get_peft_model(base, DualCoOpConfig(class_names=NAMES, n_ctx=4)).merge_and_unload()
