"""Pieces of the base teacher's training and measurement: weight decay groups, hard negatives, loss, probes, dense
features, and the shipped weights (re-evaluated against the figures recorded beside them)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from effhub.data.captions import SHAPES, CaptionWorld
from effhub.errors import ConfigError
from effhub.models.clip_teacher import probing
from effhub.models.clip_teacher.training_clip_teacher import (
    ClipCollator,
    ClipPairs,
    contrastive_loss,
    parameter_groups,
)


@pytest.fixture(scope="module")
def world():
    return CaptionWorld()


def tiny_clip_model(projection_dim: int = 8):
    """A one-layer CLIP of width 16 (a projection to `projection_dim`), seeded."""
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={"vocab_size": 40, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 12, "bos_token_id": 38,
                     "eos_token_id": 39, "pad_token_id": 39, "projection_dim": projection_dim},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 64, "patch_size": 8, "projection_dim": projection_dim},
        projection_dim=projection_dim,
    )
    torch.manual_seed(0)
    return CLIPModel(config)


@pytest.fixture(scope="module")
def small_model():
    return tiny_clip_model()


def test_no_weight_decay_on_embeddings_norms_biases_and_temperature(small_model):
    groups = parameter_groups(small_model)
    names = {id(p): name for name, p in small_model.named_parameters()}
    decayed = {names[id(p)] for p in groups["decay"]}
    kept = {names[id(p)] for p in groups["no_decay"]}
    assert [names[id(p)] for p in groups["temperature"]] == ["logit_scale"]
    for name in ("text_model.embeddings.token_embedding.weight", "text_model.embeddings.position_embedding.weight",
                 "vision_model.embeddings.position_embedding.weight", "vision_model.embeddings.class_embedding"):
        assert name in kept
    assert not any("norm" in name or name.endswith(".bias") for name in decayed)
    assert "vision_model.embeddings.patch_embedding.weight" in decayed
    assert "text_model.encoder.layers.0.self_attn.q_proj.weight" in decayed and "visual_projection.weight" in decayed
    assert len(decayed) + len(kept) + 1 == len(list(small_model.parameters()))


def test_shape_swapped_negatives_differ_in_shapes_only(world):
    rng = np.random.default_rng(0)
    shape_words = r"\b(" + "|".join(sorted((w for ws in SHAPES.values() for w in ws), key=len, reverse=True)) + r")\b"
    for caption in world.pairs(30, seed=5)["caption"]:
        swapped = world.shape_swapped(caption, rng)
        own, other = re.findall(shape_words, caption), re.findall(shape_words, swapped)
        assert len(own) == len(other) > 0
        word_shape = {w: s for s, ws in SHAPES.items() for w in ws}
        assert all(word_shape[a] != word_shape[b] for a, b in zip(own, other))
        assert re.sub(shape_words, "#", caption) == re.sub(shape_words, "#", swapped)


def test_collator_appends_one_negative_per_caption_deterministically(world):
    from effhub.models.clip_teacher.tokenization import train_clip_tokenizer

    tokenizer = train_clip_tokenizer(world.vocabulary_texts(300), vocab_size=600)
    pairs = world.pairs(4, seed=0)
    data = ClipPairs(np.stack([np.asarray(image) for image in pairs["image"]]), pairs["caption"])
    collate = ClipCollator(tokenizer, world.shape_swapped, seed=3)
    batch = collate([data[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 64, 64) and batch["input_ids"].shape[0] == 8
    assert torch.equal(collate([data[i] for i in range(4)])["input_ids"], batch["input_ids"])
    assert ClipCollator(tokenizer)([data[i] for i in range(4)])["input_ids"].shape[0] == 4


def test_contrastive_loss_is_clips_and_negatives_enter_image_to_text_only(small_model):
    ids = torch.randint(0, 38, (3, 6))
    ids[:, -1] = 39
    pixels = torch.randn(3, 3, 64, 64)
    output = small_model(input_ids=ids, pixel_values=pixels, return_loss=True)
    torch.testing.assert_close(contrastive_loss(output.logits_per_image), output.loss)
    logits = torch.zeros(3, 6)
    logits[:, :3] = torch.eye(3) * 5
    easy = contrastive_loss(logits)
    logits[:, 3:] = torch.eye(3) * 5  # a negative as similar as the partner: only image-to-text gets harder
    assert contrastive_loss(logits) > easy


def test_average_precision_and_standard_errors():
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.1, 0.2], [0.3, 0.9]])
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    ap = probing.average_precisions(scores, targets)
    assert ap[0] == pytest.approx((1 / 1 + 2 / 4) / 2) and ap[1] == pytest.approx(1.0)
    result = probing.mean_average_precision(scores, targets, bootstrap=20)
    assert result["map"] == pytest.approx(100 * ap.mean()) and result["map_se"] >= 0
    p = probing.proportion([True, False, True, True])
    assert p["value"] == 0.75 and p["se"] == pytest.approx((0.75 * 0.25 / 4) ** 0.5)


def test_linear_probe_separates_separable_data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=generator)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    weight, bias = probing.fit_linear_probe(x, y, 4)
    assert ((x @ weight + bias).argmax(-1) == y).float().mean() > 0.95
    known = torch.rand(200, 4, generator=generator) < 0.5
    targets = torch.nn.functional.one_hot(y, 4)
    weight, bias = probing.fit_linear_probe(x, targets, 4, multilabel=True, known=known)
    assert probing.mean_average_precision((x @ weight + bias).numpy(), targets.numpy(), bootstrap=0)["map"] > 75


def test_probe_l2_is_chosen_on_a_held_out_split():
    generator = torch.Generator().manual_seed(0)
    # few rows, many noise features: an unpenalised probe overfits, an overwhelming penalty cannot fit at all
    x = torch.randn(60, 40, generator=generator)
    y = (x[:, 0] + 0.5 * torch.randn(60, generator=generator) > 0).long()
    l2, scores = probing.select_l2(x, y, 2, grid=(1e-6, 1e-2, 1e3), seed=0)
    assert set(scores) == {1e-6, 1e-2, 1e3} and scores[l2] == max(scores.values())
    order = torch.randperm(60, generator=torch.Generator().manual_seed(0))  # the split select_l2 draws
    held_out, fit = order[:12], order[12:]
    weight, bias = probing.fit_linear_probe(x[fit], y[fit], 2, l2=1e-2)
    assert scores[1e-2] == pytest.approx(((x[held_out] @ weight + bias).argmax(-1) == y[held_out]).float().mean())
    assert scores[1e3] <= scores[1e-2]  # a penalty that flattens the weights ranks no better
    targets = torch.nn.functional.one_hot(y, 2)
    known = torch.rand(60, 2, generator=generator) < 0.5
    l2, scores = probing.select_l2(x, targets, 2, multilabel=True, known=known, grid=(1e-4, 1e-1))
    assert l2 in (1e-4, 1e-1) and all(0 <= value <= 1 for value in scores.values())
    with pytest.raises(ConfigError, match="too few"):
        probing.select_l2(x[:1], y[:1], 2)


def test_dense_localisation_finds_a_planted_object(world):
    split = world.multilabel(4, seed=0, split="dense-test")
    objects = [json.loads(o) for o in split["objects"]]
    grid = 8
    class_text = torch.eye(64)
    features = torch.zeros(len(objects), grid * grid, 64)
    for image, records in enumerate(objects):
        cover = probing.patch_coverage(world, records, grid)
        for record, patches in zip(records, cover):
            features[image, int(patches.argmax()), world.class_index(record["class_name"])] = 1.0
    result = probing.dense_localisation(world, features, class_text, objects)
    assert result["accuracy"] == 1.0 and 0 < result["chance"] < 0.5 and result["grid"] == "8x8"
    mask = world.object_mask(objects[0][0])
    assert mask.shape == (64, 64) and mask.max() == 1.0


def test_patch_embeddings_have_one_row_per_patch(small_model):
    pixels = torch.randn(2, 3, 64, 64)
    for mode in probing.DENSE_MODES:
        patches = probing.patch_embeddings(small_model, pixels, mode=mode)
        assert patches.shape == (2, 64, 8)
        torch.testing.assert_close(patches.norm(dim=-1), torch.ones(2, 64))


def test_mean_pooling_makes_the_last_layer_attend_uniformly(small_model, tmp_path):
    import copy

    from transformers import CLIPModel

    from effhub.models.clip_teacher.vision_pretraining import fix_mean_pooling, is_mean_pooling

    config = copy.deepcopy(small_model.config)
    config.vision_config.num_hidden_layers = 2
    torch.manual_seed(0)
    model = CLIPModel(config)
    assert not is_mean_pooling(model)
    fixed = fix_mean_pooling(model)
    assert is_mean_pooling(model) and not any(p.requires_grad for p in fixed)
    pixels = torch.randn(2, 3, 64, 64)
    model.set_attn_implementation("eager")   # the attention weights are only returned by the eager kernel
    attentions = model.vision_model(pixel_values=pixels, output_attentions=True).attentions
    tokens = attentions[-1].shape[-1]
    assert torch.allclose(attentions[-1], torch.full_like(attentions[-1], 1 / tokens))
    assert not torch.allclose(attentions[0], torch.full_like(attentions[0], 1 / tokens))
    # a plain CLIPModel folder: transformers alone reloads the fixed projection and pools the same
    model.save_pretrained(tmp_path)
    reloaded = CLIPModel.from_pretrained(tmp_path).eval()
    assert is_mean_pooling(reloaded)
    with torch.no_grad():
        assert torch.allclose(reloaded.get_image_features(pixel_values=pixels).pooler_output,
                              model.eval().get_image_features(pixel_values=pixels).pooler_output, atol=1e-6)


def test_colour_shape_loss_trains_a_colour_head_and_a_shape_head():
    from effhub.models.clip_teacher.vision_pretraining import class_loss, head_outputs

    torch.manual_seed(0)
    labels = torch.tensor([0, 5, 7, 11, 3])                      # 3 colours x 4 shapes, colour-major
    logits = torch.randn(5, head_outputs("colour-shape", 3, 4))
    assert logits.shape[1] == 7 and head_outputs("classes", 3, 4) == 12
    colour = torch.nn.functional.cross_entropy(logits[:, :3], torch.tensor([0, 1, 1, 2, 0]))
    shape = torch.nn.functional.cross_entropy(logits[:, 3:], torch.tensor([0, 1, 3, 3, 3]))
    assert torch.allclose(class_loss(logits, labels, "colour-shape", 3, 4), colour + shape)
    classes = torch.randn(5, 12)
    assert torch.allclose(class_loss(classes, labels, "classes", 3, 4),
                          torch.nn.functional.cross_entropy(classes, labels))


def test_labelled_images_add_mirrored_copies():
    from effhub.models.clip_teacher.vision_pretraining import ClipLabelledImages, collate_labelled_images

    pixels = np.random.default_rng(0).integers(0, 255, (3, 4, 4, 3), dtype=np.uint8)
    plain, mirrored = ClipLabelledImages(pixels, [1, 2, 3]), ClipLabelledImages(pixels, [1, 2, 3], flipped_copies=True)
    assert len(plain) == 3 and len(mirrored) == 6
    assert np.array_equal(mirrored[4]["pixels"], pixels[1][:, ::-1]) and mirrored[4]["label"] == 2
    assert np.array_equal(mirrored[1]["pixels"], pixels[1])
    batch = collate_labelled_images([mirrored[0], mirrored[3]])
    assert batch["pixel_values"].shape == (2, 3, 4, 4) and batch["labels"].tolist() == [1, 1]
    assert torch.equal(batch["pixel_values"][1], batch["pixel_values"][0].flip(-1))


def test_object_images_hold_labels_and_patch_covers_and_mirror_them(world):
    from effhub.models.clip_teacher.vision_pretraining import ClipObjectImages, collate_object_images

    star = {"class_name": "green star", "colour": "green", "shape": "star", "size": "large", "texture": "plain",
            "centre": [12.0, 30.0], "radius": 9.0, "angle": 0.0, "rgb": [30, 200, 30]}
    circle = dict(star, class_name="red circle", colour="red", shape="circle", centre=[52.0, 52.0], radius=6.0)
    pixels = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    images = ClipObjectImages(world, pixels, [[star], [star, circle]], grid=8, flipped_copies=True)
    assert len(images) == 4
    assert images[0]["object_labels"].tolist() == [world.class_index("green star"), -1]
    assert images[1]["object_labels"].tolist() == [world.class_index("green star"), world.class_index("red circle")]
    covers = images[1]["object_covers"].reshape(2, 8, 8)
    assert covers[1, 6, 6] > 0.9 and covers[1, 0, 0] == 0 and covers[0, 3, 1] > 0.5   # rows are y, columns x
    assert not images[0]["object_covers"][1].any()                                  # the padding object covers nothing
    mirrored = images[3]
    assert np.array_equal(mirrored["pixels"], pixels[1][:, ::-1])
    assert np.array_equal(mirrored["object_covers"].reshape(2, 8, 8), covers[:, :, ::-1])
    batch = collate_object_images([images[0], images[3]])
    assert batch["object_labels"].shape == (2, 2) and batch["object_covers"].shape == (2, 2, 64)


def test_objects_loss_names_each_object_from_its_patches_and_a_lone_one_from_the_pooled_output():
    from effhub.models.clip_teacher.vision_pretraining import class_loss, objects_loss

    torch.manual_seed(0)
    colours, shapes = 2, 3                                       # 6 classes, colour-major; a colour and a shape head
    pooled, patches = torch.randn(2, 5), torch.randn(2, 4, 5)   # 2 images of 4 patches
    labels = torch.tensor([[4, -1], [1, 5]])                    # image 0: one object; image 1: two
    covers = torch.tensor([[[1.0, 0.5, 0, 0], [0, 0, 0, 0]],
                           [[0, 0, 1.0, 0], [0, 0.25, 0, 0.75]]])
    regions = torch.stack([(patches[0, 0] + 0.5 * patches[0, 1]) / 1.5, patches[1, 2],
                           (0.25 * patches[1, 1] + 0.75 * patches[1, 3])])
    expected = class_loss(regions, torch.tensor([4, 1, 5]), "colour-shape", colours, shapes)
    expected = expected + class_loss(pooled[:1], torch.tensor([4]), "colour-shape", colours, shapes)
    assert torch.allclose(objects_loss(pooled, patches, labels, covers, "colour-shape", colours, shapes), expected)
    # without a lone object the pooled output is not trained
    only_pair = objects_loss(pooled[1:], patches[1:], labels[1:], covers[1:], "colour-shape", colours, shapes)
    assert torch.allclose(only_pair, class_loss(regions[1:], torch.tensor([1, 5]), "colour-shape", colours, shapes))


def test_presence_loss_is_binary_cross_entropy_summed_over_classes_against_the_classes_present():
    from effhub.models.clip_teacher.vision_pretraining import presence_loss

    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -3.0]])
    labels = torch.tensor([[2, -1, -1], [0, 0, 1]])             # image 1 holds class 0 twice: present once
    targets = torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    probabilities = torch.sigmoid(logits)
    by_hand = -(targets * probabilities.log() + (1 - targets) * (1 - probabilities).log()).sum() / 2
    assert torch.allclose(presence_loss(logits, labels), by_hand)


def test_region_presence_loss_names_each_object_from_its_patches_through_the_presence_head():
    from effhub.models.clip_teacher.vision_pretraining import region_presence_loss

    torch.manual_seed(0)
    patch_presence = torch.randn(2, 4, 6)                          # 2 images, 4 patches, 6 classes
    labels = torch.tensor([[4, -1], [1, 5]])
    covers = torch.tensor([[[1.0, 0.5, 0, 0], [0, 0, 0, 0]],
                           [[0, 0, 1.0, 0], [0, 0.25, 0, 0.75]]])
    regions = torch.stack([(patch_presence[0, 0] + 0.5 * patch_presence[0, 1]) / 1.5, patch_presence[1, 2],
                           (0.25 * patch_presence[1, 1] + 0.75 * patch_presence[1, 3])])
    expected = torch.nn.functional.cross_entropy(regions, torch.tensor([4, 1, 5]))
    assert torch.allclose(region_presence_loss(patch_presence, labels, covers), expected)


def test_classifier_presence_head_reads_the_pooled_output(small_model):
    from effhub.models.clip_teacher.vision_pretraining import ClipTeacherVisionClassifier

    classifier = ClipTeacherVisionClassifier(small_model.vision_model, 5, num_classes=6)
    pixel_values = torch.randn(2, 3, 64, 64)
    logits = classifier(pixel_values, patch_logits=True)
    assert logits.pooled.shape == (2, 5) and logits.patches.shape == (2, 64, 5) and logits.presence.shape == (2, 6)
    pooled = small_model.vision_model(pixel_values=pixel_values).pooler_output
    assert torch.allclose(logits.presence, classifier.presence_head(pooled), atol=1e-6)
    assert logits.patch_presence.shape == (2, 64, 6)
    assert ClipTeacherVisionClassifier(small_model.vision_model, 5)(pixel_values, patch_logits=True).presence is None


def test_locked_image_tower_trains_the_text_side_and_projections_only(small_model):
    import copy

    from effhub.models.clip_teacher.training_clip_teacher import contrastive_phase, trainable_parameters
    from effhub.models.clip_teacher.vision_pretraining import fix_mean_pooling
    from effhub.recipes import load_recipe

    model = copy.deepcopy(small_model)
    recipe = load_recipe("clip-teacher", "demo", ["model.vision_pooling=mean", "train.lock_image_tower=true",
                                                  "pretrain.steps=5"])
    fixed = {id(p) for p in fix_mean_pooling(model)}
    names = {id(p): name for name, p in model.named_parameters()}
    update = contrastive_phase(recipe, model).updates[0]
    trained = {names[id(p)] for p in update.parameters(model)}
    assert trained and not any(name.startswith("vision_model.") for name in trained)
    assert {"visual_projection.weight", "text_projection.weight", "logit_scale"} <= trained
    assert any(name.startswith("text_model.") for name in trained)
    # unlocked: the vision tower too, but never the fixed query projection
    unlocked = trainable_parameters(model, recipe)
    assert len(unlocked) == len(list(model.parameters())) - 2 and not fixed & {id(p) for p in unlocked}


def test_recipe_checks_name_the_fix():
    from effhub.errors import ConfigError
    from effhub.models.clip_teacher.training_clip_teacher import check_recipe
    from effhub.recipes import load_recipe

    with pytest.raises(ConfigError, match="pretrain.steps"):
        check_recipe(load_recipe("clip-teacher", "demo", ["train.lock_image_tower=true", "pretrain.steps=0"]))
    with pytest.raises(ConfigError, match="object_steps"):
        check_recipe(load_recipe("clip-teacher", "demo", ["train.lock_image_tower=false", "pretrain.steps=0",
                                                          "pretrain.object_steps=5"]))
    with pytest.raises(ConfigError, match="presence_regions"):
        check_recipe(load_recipe("clip-teacher", "demo", ["pretrain.presence_regions=true"]))
    with pytest.raises(ConfigError, match="presence_weight.*object_steps"):
        check_recipe(load_recipe("clip-teacher", "demo", ["pretrain.presence_weight=1.0"]))
    with pytest.raises(ConfigError, match="presence_weight"):
        check_recipe(load_recipe("clip-teacher", "demo", ["pretrain.object_steps=5", "pretrain.presence_weight=-1"]))
    with pytest.raises(ConfigError, match="pretrain.loss"):
        check_recipe(load_recipe("clip-teacher", "demo", ["pretrain.loss=hinge"]))
    with pytest.raises(ConfigError, match="vision_pooling"):
        check_recipe(load_recipe("clip-teacher", "demo", ["model.vision_pooling=max"]))


def test_removing_the_prompts_common_direction_centres_them_and_leaves_the_images_alone(world):
    from effhub.models.clip_teacher.calibration import remove_prompt_common_direction
    from effhub.models.clip_teacher.evaluation import encode_texts
    from effhub.models.clip_teacher.weights import load_base_teacher

    model, processor = load_base_teacher()
    tokenizer, prompts = processor.tokenizer, world.zero_shot_prompts()
    # the shipped base already had its prompts centred (mean norm about 0.02): plant a shared direction first, a
    # rank-one term of the text projection that adds about twice a prompt's own size along one unit vector
    with torch.no_grad():
        pooled = model.text_model(**tokenizer(prompts, padding=True, return_tensors="pt")).pooler_output
        mean_pooled = pooled.mean(dim=0)
        shared = torch.nn.functional.normalize(
            torch.randn(model.text_projection.out_features, generator=torch.Generator().manual_seed(0)), dim=0)
        size = model.text_projection(pooled).norm(dim=-1).mean()
        model.text_projection.weight.add_(2 * size * torch.outer(shared, mean_pooled) / mean_pooled.norm() ** 2)
    captions = ["a small red circle at the top left.", "a big blue square in the middle and a green star."]
    pixels = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        image_before = model.get_image_features(pixel_values=pixels).pooler_output
    captions_before = encode_texts(model, tokenizer, captions)
    direction = encode_texts(model, tokenizer, prompts).mean(dim=0)
    direction = direction / direction.norm()
    report = remove_prompt_common_direction(model, tokenizer, prompts)
    with torch.no_grad():
        image_after = model.get_image_features(pixel_values=pixels).pooler_output
    assert report["mean_norm_before"] > 0.5 and report["mean_norm_after"] < 0.05
    assert encode_texts(model, tokenizer, prompts).mean(dim=0).norm() < 0.05
    # every text loses exactly its component along that direction, and nothing else
    removed = captions_before - (captions_before @ direction)[:, None] * direction
    expected = removed / removed.norm(dim=-1, keepdim=True)
    assert torch.allclose(encode_texts(model, tokenizer, captions), expected, atol=1e-5)
    assert torch.equal(image_before, image_after)
    with pytest.raises(ConfigError, match="common direction"):
        remove_prompt_common_direction(model, tokenizer, prompts[:1])


def test_whitened_projection_gives_the_images_identity_covariance_and_leaves_the_tower_alone(small_model):
    from effhub.models.clip_teacher.calibration import whiten_visual_projection

    model = tiny_clip_model(projection_dim=16).eval()
    pixels = torch.randn(200, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    tower = {key: value.clone() for key, value in model.vision_model.state_dict().items()}
    report = whiten_visual_projection(model, pixels, batch_size=64, ridge=1e-6)
    with torch.no_grad():
        embeds = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
    # the pooled output leaves a LayerNorm, which centres each feature vector: one direction (all ones) carries no
    # variance and stays at ~0 (the ridge); every other direction gets unit variance
    variances = torch.linalg.eigvalsh(torch.cov(embeds.T.double()))
    assert variances[0] < 1e-2 and torch.allclose(variances[1:], torch.ones(15, dtype=torch.float64), atol=1e-2)
    assert torch.allclose(model.visual_projection.weight, model.visual_projection.weight.T, atol=1e-5)  # symmetric
    assert all(torch.equal(value, model.vision_model.state_dict()[key]) for key, value in tower.items())
    assert report["images"] == 200 and 0 < report["eigenvalue_min"] <= report["eigenvalue_max"]
    with pytest.raises(ConfigError, match="square"):
        whiten_visual_projection(small_model, pixels)  # projection 16 -> 8
    with pytest.raises(ConfigError, match="covariance"):
        whiten_visual_projection(model, pixels[:16])


def test_whitened_projection_is_not_trained_by_the_contrastive_stage():
    from effhub.models.clip_teacher.training_clip_teacher import check_recipe, contrastive_phase
    from effhub.recipes import load_recipe

    model = tiny_clip_model(projection_dim=16)
    names = {id(p): name for name, p in model.named_parameters()}
    for locked in ("true", "false"):
        recipe = load_recipe("clip-teacher", "demo", ["train.visual_projection=whitened",
                                                      f"train.lock_image_tower={locked}"])
        trained = {names[id(p)] for p in contrastive_phase(recipe, model).updates[0].parameters(model)}
        assert "visual_projection.weight" not in trained and "text_projection.weight" in trained
    learned = load_recipe("clip-teacher", "demo", ["train.lock_image_tower=true"])
    trained = {names[id(p)] for p in contrastive_phase(learned, model).updates[0].parameters(model)}
    assert "visual_projection.weight" in trained
    with pytest.raises(ConfigError, match="visual_projection"):
        check_recipe(load_recipe("clip-teacher", "demo", ["train.visual_projection=pca"]))
    with pytest.raises(ConfigError, match="projection_dim"):
        check_recipe(load_recipe("clip-teacher", "demo", ["train.visual_projection=whitened",
                                                          "model.projection_dim=64"]))
    with pytest.raises(ConfigError, match="whitening_images"):
        check_recipe(load_recipe("clip-teacher", "demo", ["train.visual_projection=whitened",
                                                          "train.whitening_images=100000"]))


def test_tag_prompts_name_every_class_in_one_template_with_synonyms(world):
    from effhub.data.captions.world import COLOURS
    from effhub.models.clip_teacher.tagging import TAG_TEMPLATES, tag_prompts

    seen_templates, seen_words = set(), set()
    for seed in range(40):
        prompts = tag_prompts(world.class_names, np.random.default_rng(seed))
        assert len(prompts) == len(world.class_names)
        # one template for every class of a batch: the prompts differ only in the class words
        # (the longest template that matches: "{np}." matches every prompt)
        templates = {max((t for t in TAG_TEMPLATES if re.fullmatch(
            re.escape(t).replace(re.escape("{np}"), "an? [a-z]+ [a-z ]+"), prompt)), key=len) for prompt in prompts}
        assert len(templates) == 1
        seen_templates |= templates
        for name, prompt in zip(world.class_names, prompts):
            colour, shape = name.split(" ")
            assert any(word in prompt for word in COLOURS[colour][1]) and any(word in prompt for word in SHAPES[shape])
            seen_words.add(prompt)
    assert seen_templates == set(TAG_TEMPLATES)
    assert any("scarlet" in prompt for prompt in seen_words) and any("red " in prompt for prompt in seen_words)
    assert tag_prompts(world.class_names, np.random.default_rng(1)) == tag_prompts(world.class_names,
                                                                                   np.random.default_rng(1))


def test_tagger_scores_prompts_by_dualcoops_region_aggregation_and_learns_its_three_scalars(small_model):
    from effhub.adapters.dualcoop.layer import dual_logits, region_features
    from effhub.models.clip_teacher.tagging import ClipTeacherTagger, tagging_loss

    tagger = ClipTeacherTagger(small_model, region_temperature=4.0, logit_scale=3.0, bias=-2.0)
    assert tagger.logit_scale is small_model.logit_scale
    pixel_values = torch.randn(3, 3, 64, 64)
    prompts = torch.tensor([[38, 5, 6, 39], [38, 7, 39, 39]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    logits = tagger.tag_logits(pixel_values, prompts, mask)
    assert logits.shape == (3, 2)
    with torch.no_grad():
        text = small_model.get_text_features(input_ids=prompts, attention_mask=mask)
        text = text if isinstance(text, torch.Tensor) else text.pooler_output
        expected, _ = dual_logits(region_features(small_model, pixel_values, "class_values"), text, 4.0, 3.0,
                                  image_threshold=True)
    assert torch.allclose(logits, expected[:, 1] - expected[:, 0] - 2.0, atol=1e-5)
    # the tagging stage passes the last vision block's input of its CLIP forward instead of running the tower again
    with torch.no_grad():
        hidden = small_model.vision_model(pixel_values=pixel_values, output_hidden_states=True).hidden_states[-2]
        assert torch.equal(tagger.tag_logits(None, prompts, mask, last_block_input=hidden), logits.detach())
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    loss = tagging_loss(logits, labels)
    assert torch.isclose(loss, torch.nn.functional.binary_cross_entropy_with_logits(logits, labels))
    loss.backward()
    scalars = (tagger.tag_region_temperature_log, tagger.tag_logit_scale_log, tagger.tag_bias)
    assert all(p.grad is not None and p.grad.abs() > 0 for p in scalars)
    small_model.zero_grad()


def test_tagging_stage_trains_the_text_side_projections_and_scalars_never_the_vision_tower(small_model):
    from effhub.models.clip_teacher.tagging import ClipTeacherTagger
    from effhub.models.clip_teacher.training_clip_teacher import parameter_groups, tagging_phase
    from effhub.recipes import load_recipe

    tagger = ClipTeacherTagger(small_model)
    names = {id(p): name for name, p in tagger.named_parameters()}
    for projection in ("learned", "whitened"):
        recipe = load_recipe("clip-teacher", "demo", ["tagging.steps=5", f"train.visual_projection={projection}"])
        update = tagging_phase(recipe, tagger).updates[0]
        trained = {names[id(p)] for p in update.parameters(tagger)}
        assert not any(name.startswith("clip.vision_model.") for name in trained)
        assert {"clip.text_projection.weight", "clip.logit_scale", "tag_bias", "tag_logit_scale_log",
                "tag_region_temperature_log"} <= trained
        assert ("clip.visual_projection.weight" in trained) == (projection == "learned")
    groups = parameter_groups(tagger, list(tagger.parameters()))
    assert [names[id(p)] for p in groups["temperature"]] == ["clip.logit_scale"]
    assert {"tag_bias", "tag_logit_scale_log"} <= {names[id(p)] for p in groups["no_decay"]}


def test_collator_adds_tag_prompts_and_labels_for_the_tagging_stage(world):
    from effhub.models.clip_teacher.tokenization import train_clip_tokenizer

    tokenizer = train_clip_tokenizer(world.vocabulary_texts(300), vocab_size=600)
    pairs = world.pairs(4, seed=0)
    from effhub.data.multilabel import multi_hot

    labels = multi_hot(pairs["labels"], len(world.class_names)).astype(np.float32)
    data = ClipPairs(np.stack([np.asarray(image) for image in pairs["image"]]), pairs["caption"], labels)
    collate = ClipCollator(tokenizer, seed=3, tag_classes=world.class_names)
    batch = collate([data[i] for i in range(4)])
    assert batch["tag_input_ids"].shape[0] == len(world.class_names) == batch["tag_labels"].shape[1]
    assert torch.equal(batch["tag_labels"], torch.from_numpy(labels))
    assert torch.equal(collate([data[i] for i in range(4)])["tag_input_ids"], batch["tag_input_ids"])
    assert "tag_input_ids" not in ClipCollator(tokenizer)([data[i] for i in range(4)])


def test_tagging_recipe_checks_name_the_fix():
    from effhub.models.clip_teacher.training_clip_teacher import check_recipe, load_start_teacher
    from effhub.recipes import load_recipe

    with pytest.raises(ConfigError, match="start_from"):
        check_recipe(load_recipe("clip-teacher", "demo", ["tagging.start_from=base"]))
    with pytest.raises(ConfigError, match="tagging.steps"):
        check_recipe(load_recipe("clip-teacher", "demo", ["tagging.steps=-1"]))
    with pytest.raises(ConfigError, match="tagging.weight"):
        check_recipe(load_recipe("clip-teacher", "demo", ["tagging.steps=5", "tagging.weight=-1"]))
    with pytest.raises(ConfigError, match="neither a shipped teacher nor a model folder"):
        load_start_teacher("no-such-teacher")
