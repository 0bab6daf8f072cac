"""The generated caption world: determinism, frozen parameters, splits for CLIP, DualCoOp and DIME-FM, cache."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from effhub.data.captions import (
    CAPTION_WORLD_FINGERPRINT,
    CAPTION_WORLD_VERSION,
    COLOURS,
    SHAPES,
    CaptionWorld,
    CaptionWorldConfig,
)
from effhub.data.captions.world import CAPTION_WORLD_FINGERPRINTS, SPLIT_NAMES
from effhub.errors import ConfigError, DatasetError

# pixels and captions of the first 8 images of one split under each frozen world version; a change of the renderer
# or the captioner must bump CAPTION_WORLD_VERSION (and add its value here together with the measured figures)
FROZEN_SAMPLE_SHA256 = {
    1: "3156aea6252aaa22d6b9f1b43d495b24d1ffc3a578ad72f08f03d799a765ac92",
    2: "72ce2892795ee2419c7adb92685818fd8f60569f6e701495593984f29247af20",
}


def _digest(dataset) -> str:
    pixels = b"".join(np.asarray(image).tobytes() for image in dataset["image"])
    return hashlib.sha256(pixels + "|".join(dataset["caption"]).encode()).hexdigest()


@pytest.fixture(scope="module")
def world():
    return CaptionWorld()


def test_world_parameters_are_frozen(world):
    assert CAPTION_WORLD_VERSION == 2
    assert CaptionWorldConfig().fingerprint() == CAPTION_WORLD_FINGERPRINT == CAPTION_WORLD_FINGERPRINTS[2]
    assert _digest(world.pairs(8, seed=0, split="fingerprint")) == FROZEN_SAMPLE_SHA256[2]
    assert world.pairs(1, seed=0)["image"][0].size == (64, 64)
    # a different parameter gives a different fingerprint (the guard can fail)
    assert CaptionWorldConfig(noise=9.0).fingerprint() != CAPTION_WORLD_FINGERPRINT


def test_version_1_stays_readable():
    """Version 1 draws what it drew before version 2 existed: same fingerprint, pixels and captions."""
    config = CaptionWorldConfig.for_version(1)
    assert config.image_size == 48 and config.fingerprint() == CAPTION_WORLD_FINGERPRINTS[1]
    old = CaptionWorld(config)
    assert _digest(old.pairs(8, seed=0, split="fingerprint")) == FROZEN_SAMPLE_SHA256[1]
    assert old.pairs(1, seed=0)["image"][0].size == (48, 48)
    with pytest.raises(ConfigError, match="version"):
        CaptionWorldConfig.for_version(3)


def test_split_drawn_with_another_size_is_a_prefix_of_the_same_stream(world):
    short, long = world.pairs(5, seed=0, split="prefix"), world.pairs(9, seed=0, split="prefix")
    assert _digest(short) == _digest(long.select(range(5)))
    single = world.single_object(70, seed=0, split="prefix")
    assert single["label"][:64] == world.single_object(64, seed=0, split="prefix")["label"]


def test_image_pool_cannot_be_rederived_with_captions():
    """From version 2 a split's stream is keyed by its kind: no builder re-draws another builder's images."""
    world = CaptionWorld()
    pool = np.stack([np.asarray(image) for image in world.image_pool(6, seed=0)["image"]])
    for build in (world.pairs, lambda n, seed, split: world.multilabel(n, seed=seed, split=split),
                  world.single_object):
        images = np.stack([np.asarray(image) for image in build(6, seed=0, split="image-pool")["image"]])
        assert not any((pool == image).all(axis=(1, 2, 3)).any() for image in images)
    # version 1 had the leak (kept as it was, for reproducibility)
    old = CaptionWorld(CaptionWorldConfig.for_version(1))
    leaked = np.stack([np.asarray(image) for image in old.pairs(3, seed=0, split="image-pool")["image"]])
    assert (leaked == np.stack([np.asarray(image) for image in old.image_pool(3, seed=0)["image"]])).all()


def test_split_names_of_all_consumers_are_distinct():
    names = [name for splits in SPLIT_NAMES.values() for name in splits.values()]
    assert len(names) == len(set(names))
    assert {"teacher", "prompt-learning", "distillation"} <= set(SPLIT_NAMES)


def test_class_vocabulary_and_held_out_classes(world):
    assert len(world.class_names) == len(COLOURS) * len(SHAPES) == 64
    assert len(world.unseen_classes) == 16 and len(set(world.unseen_classes)) == 16
    assert set(world.seen_classes) | set(world.unseen_classes) == set(world.class_names)
    assert not set(world.seen_classes) & set(world.unseen_classes)
    # every colour and every shape stays in the seen classes: unseen classes are new combinations of known words
    for colour in COLOURS:
        assert any(name.startswith(colour + " ") for name in world.seen_classes)
    for shape in SHAPES:
        assert any(name.endswith(" " + shape) for name in world.seen_classes)
    assert world.zero_shot_prompts(["orange star", "red circle"]) == ["a photo of an orange star.",
                                                                     "a photo of a red circle."]


def test_pairs_are_deterministic_and_splits_independent(world):
    first = world.pairs(12, seed=3)
    again = world.pairs(12, seed=3)
    assert _digest(first) == _digest(again)
    assert _digest(world.pairs(12, seed=4)) != _digest(first)
    assert _digest(world.pairs(12, seed=3, split="pairs-test")) != _digest(first)


def test_pair_labels_match_objects_and_captions(world):
    pairs = world.pairs(40, seed=1)
    assert pairs.features["labels"].feature.names == world.class_names
    counts = set()
    for row in pairs:
        objects = json.loads(row["objects"])
        counts.add(row["num_objects"])
        assert len(objects) == row["num_objects"]
        assert row["labels"] == sorted({world.class_index(o["class_name"]) for o in objects})
        assert row["image"].size == (64, 64)
        # every object's shape is named in the caption (canonical word or a synonym)
        for obj in objects:
            assert any(word in row["caption"] for word in SHAPES[obj["shape"]]), row["caption"]
    assert counts <= set(range(1, 5)) and len(counts) > 1


def test_single_object_split_is_balanced_and_labelled(world):
    split = world.single_object(128, seed=0)
    labels = np.asarray(split["label"])
    assert np.bincount(labels, minlength=64).tolist() == [2] * 64
    row = split[5]
    assert json.loads(row["objects"])[0]["class_name"] == world.class_names[row["label"]]
    # the object is really drawn: pixels differ from the background
    assert np.asarray(row["image"]).std() > 10


def test_multilabel_seen_split_has_no_unseen_class(world):
    seen = world.multilabel(60, seed=0, classes="seen")
    unseen = {world.class_index(name) for name in world.unseen_classes}
    assert all(not set(labels) & unseen for labels in seen["labels"])
    assert any(len(labels) > 1 for labels in seen["labels"])


def test_unpaired_corpus_and_image_pool_share_no_ids(world):
    texts = world.text_corpus(30, seed=0)
    images = world.image_pool(30, seed=0)
    assert not set(texts["id"]) & set(images["id"])
    assert all(t.startswith("txt-") for t in texts["id"]) and all(i.startswith("img-") for i in images["id"])
    assert set(images.column_names) == {"id", "image"} and set(texts.column_names) == {"id", "text"}
    # separately seeded: the corpus is not the captions of the pool's scenes
    assert texts["text"] != world.pairs(30, seed=0, split="image-pool")["caption"]


def test_vocabulary_texts_cover_every_word(world):
    text = " ".join(world.vocabulary_texts(200))
    for _, synonyms in COLOURS.values():
        assert all(word in text for word in synonyms)


def test_cache_round_trip_and_corrupt_entry(tmp_path):
    cached = CaptionWorld(cache_dir=tmp_path)
    first = cached.pairs(10, seed=2)
    folders = list((tmp_path / "caption_world").glob("v2-*/pairs-n10-s2"))
    assert len(folders) == 1 and not list(folders[0].parent.glob(".*"))  # no temp folder left behind
    assert _digest(cached.pairs(10, seed=2)) == _digest(first) == _digest(CaptionWorld().pairs(10, seed=2))
    (folders[0] / "dataset_info.json").write_text("{not json")
    with pytest.raises(DatasetError, match="delete that folder"):
        cached.pairs(10, seed=2)


@pytest.mark.parametrize(
    "build",
    [
        lambda: CaptionWorldConfig(image_size=8),
        lambda: CaptionWorldConfig(num_unseen_classes=64),
        lambda: CaptionWorldConfig(max_objects=0),
        lambda: CaptionWorld().pairs(0),
        lambda: CaptionWorld().multilabel(4, classes="some"),
        lambda: CaptionWorld().class_index("golden unicorn"),
    ],
)
def test_bad_input_raises_config_error(build):
    with pytest.raises(ConfigError, match="Fix:"):
        build()
