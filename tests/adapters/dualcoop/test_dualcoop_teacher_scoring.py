"""DualCoOp's scoring on effhub's shipped (mean-pooling) teacher: word-initialised contexts reproduce zero-shot CLIP's
hand-prompt scores, the class-token region path stays in the joint space, the shared negative prompt, the image-level
threshold and the logit offset (docs/dualcoop.md, "Why the prompt learners sat at chance" and "An image-level threshold
instead of a negative prompt")."""

import pytest
import torch
from peft import get_peft_model

import effhub  # noqa: F401  (registers the PEFT type)
from effhub import DualCoOpConfig
from effhub.adapters.dualcoop.layer import dual_logit_offset, dual_logits, presence_probabilities, region_features
from effhub.errors import ConfigError
from effhub.models.clip_teacher.weights import load_base_teacher

NAMES = ["red circle", "blue square", "green star", "yellow triangle"]


def images(n=4, seed=0):
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def hand_prompt_cosines(clip, tokenizer, pixels):
    with torch.no_grad():
        text = clip.get_text_features(**tokenizer([f"a photo of a {n}." for n in NAMES], padding=True,
                                                  return_tensors="pt")).pooler_output
        image = clip.get_image_features(pixel_values=pixels).pooler_output
    text = text / text.norm(dim=-1, keepdim=True)
    return (image / image.norm(dim=-1, keepdim=True)) @ text.T


def test_word_initialised_contexts_reproduce_the_hand_prompt_scores():
    clip, processor = load_base_teacher()
    pixels = images()
    cosines = hand_prompt_cosines(clip, processor.tokenizer, pixels)
    torch.manual_seed(0)
    model = get_peft_model(clip, DualCoOpConfig(class_names=NAMES, n_ctx=4, ctx_init_pos="a photo of a",
                                                dense_mode="global", negative_prompt="shared", logit_offset=-3.0))
    config = model.peft_config["default"]
    with torch.no_grad():
        out = model(pixel_values=pixels)
    scale = config.region_temperature * config.logit_scale
    assert scale == pytest.approx(float(clip.logit_scale.exp()), rel=1e-5)   # the teacher's own logit scale
    # the positive logit is the teacher's scaled hand-prompt cosine plus the offset
    torch.testing.assert_close(out.logits[:, 1], scale * cosines - 3.0, rtol=0, atol=1e-4)
    # one negative feature for every class: the classes of an image rank exactly as zero-shot CLIP ranks them
    assert torch.equal(out.logits[:, 0], out.logits[:, :1, 0].expand_as(out.logits[:, 0]))
    assert torch.equal(out.probs.argsort(dim=1), cosines.argsort(dim=1))


def world_images(n=16):
    from effhub.data.captions import SPLIT_NAMES, CaptionWorld, default_cache_dir
    from effhub.models.clip_teacher.evaluation import images_to_uint8
    from effhub.models.clip_teacher.processing import pixel_values_from_uint8

    world = CaptionWorld(cache_dir=default_cache_dir())
    split = world.multilabel(n, seed=0, classes="all", split=SPLIT_NAMES["prompt-learning"]["test"])
    return pixel_values_from_uint8(images_to_uint8(split["image"]))


def test_class_values_regions_stay_in_the_joint_space_of_the_pooled_embedding():
    clip, _ = load_base_teacher()
    pixels = world_images()
    with torch.no_grad():
        pooled = clip.get_image_features(pixel_values=pixels).pooler_output
        single = region_features(clip, pixels, "global")
        regions = {mode: region_features(clip, pixels, mode) for mode in ("values", "class_values")}
    torch.testing.assert_close(single[:, 0], pooled, rtol=0, atol=1e-5)

    def mean_cosine(features):
        features = features / features.norm(dim=-1, keepdim=True)
        return float((features * (pooled / pooled.norm(dim=-1, keepdim=True))[:, None]).sum(-1).mean())

    # the teacher's text is aligned to the class token after the last block's MLP: the class-token path stays close
    # to it; the value path (MaskCLIP, the paper's ResNet path) skips that MLP and lands far from it (0.02 on the
    # teacher shipped at noon on 2026-12-02, 0.32 on the one with presence_regions)
    class_values, values = mean_cosine(regions["class_values"]), mean_cosine(regions["values"])
    assert class_values > 0.7
    assert abs(values) < 0.5 and class_values - values > 0.4


def test_logit_offset_starts_at_the_label_prior_and_bad_options_are_refused():
    torch.manual_seed(0)
    logits = torch.randn(8, 2, 5) * 4
    labels = torch.zeros(8, 5, dtype=torch.long)
    labels[:2, 0] = 1
    labels[7] = -1
    offset = dual_logit_offset(logits, labels)
    shifted, _ = dual_logits(torch.ones(1, 1, 2), torch.eye(2), 1.0, 1.0, logit_offset=offset)
    assert shifted[0, 1, 0] - shifted[0, 0, 0] == pytest.approx(offset, abs=1e-6)   # equal cosines: offset only
    known = labels >= 0
    margin = (logits[:, 1] - logits[:, 0])[known] + offset
    assert float(margin.mean()) == pytest.approx(float(torch.logit(torch.tensor(2 / 35))), abs=1e-5)
    assert presence_probabilities(shifted).shape == (1, 1)
    with pytest.raises(ConfigError, match="negative_prompt"):
        DualCoOpConfig(class_names=NAMES, negative_prompt="none")
    with pytest.raises(ConfigError, match="dense_mode"):
        DualCoOpConfig(class_names=NAMES, dense_mode="pooled")
    with pytest.raises(ConfigError, match="logit_offset"):
        DualCoOpConfig(class_names=NAMES, logit_offset="low")


def test_image_threshold_against_a_hand_computation():
    regions = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])            # 2 regions
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])                 # the positive prompts of 2 classes, no negatives
    logits, weights = dual_logits(regions, text, region_temperature=2.0, logit_scale=3.0, logit_offset=0.5,
                                  image_threshold=True)
    positive = []
    for similarity in (torch.tensor([2.0, 0.0]), torch.tensor([1.2, 1.6])):
        positive.append(3 * (similarity.softmax(0) * similarity).sum())
    positive = torch.stack(positive)
    threshold = torch.log(positive.exp().mean())
    torch.testing.assert_close(logits[0, 0], threshold.expand(2))
    torch.testing.assert_close(logits[0, 1], positive + 0.5)
    assert weights.shape == (1, 2, 2)


def test_image_threshold_adapter_scores_each_class_against_the_image_s_other_classes(tmp_path):
    from peft import PeftModel

    clip, processor = load_base_teacher()
    pixels = images()
    cosines = hand_prompt_cosines(clip, processor.tokenizer, pixels)
    torch.manual_seed(0)
    model = get_peft_model(clip, DualCoOpConfig(class_names=NAMES, n_ctx=4, ctx_init_pos="a photo of a",
                                                dense_mode="global", negative_prompt="image_threshold",
                                                logit_offset=-3.0))
    layer = model.get_base_model().text_model.embeddings.token_embedding
    assert list(layer.dualcoop_ctx_neg) == []                      # no negative prompt, no negative contexts
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 4 * 96
    config = model.peft_config["default"]
    with torch.no_grad():
        out = model(pixel_values=pixels)
    scale = config.region_temperature * config.logit_scale
    positive = scale * cosines
    expected = torch.sigmoid(positive - 3.0 - (positive.logsumexp(dim=1, keepdim=True) - torch.log(torch.tensor(4.0))))
    torch.testing.assert_close(out.probs, expected, rtol=0, atol=1e-5)
    assert out.text_embeds.shape[0] == len(NAMES)                    # positive prompts only
    model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(load_base_teacher()[0], tmp_path / "adapter")
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values=pixels).logits, out.logits)
    with pytest.raises(ConfigError, match="two or more classes"):
        model(pixel_values=pixels, class_names=["red circle"])
    with pytest.raises(ConfigError, match="no negative prompt"):
        DualCoOpConfig(class_names=NAMES, negative_prompt="image_threshold", n_ctx_neg=4)
