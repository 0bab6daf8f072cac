"""The teacher-feature cache: resumable, keyed to the teacher and the sources; the source readers; unpaired halves
of a paired dataset; every bad input raises an `effhub.errors` type naming the problem and the fix."""

import json

import datasets
import numpy as np
import pytest

from effhub.errors import ConfigError, DatasetError
from effhub.models.dime_fm.features_dime_fm import (
    CACHE_INFO_FILE, cache_features, load_feature_cache, load_image_source, load_text_source, load_teacher,
    read_text_file, unpaired_sources,
)


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("base")


@pytest.fixture(scope="module")
def cache(teacher, tmp_path_factory):
    return cache_features(teacher, "world:24", "world:20", tmp_path_factory.mktemp("cache") / "feats", batch_size=16,
                          shard_size=16, progress=False)


def test_cache_holds_normalised_teacher_embeddings_in_source_order(teacher, cache):
    loaded = load_feature_cache(cache, teacher)
    assert loaded.image_embeds.shape == (24, teacher.projection_dim)
    assert loaded.text_embeds.shape == (20, teacher.projection_dim)
    assert np.allclose(np.linalg.norm(loaded.image_embeds, axis=1), 1, atol=1e-5)
    info = json.loads((cache / CACHE_INFO_FILE).read_text())
    assert info["teacher_id"] == "effhub/clip-teacher-base" and info["images"]["rows"] == 24
    # row 3 of the cache is the teacher's embedding of image 3 of the source
    import torch

    from effhub.models.dime_fm.features_dime_fm import PixelCollator

    images, _ = load_image_source("world:24")
    pixels = PixelCollator(teacher.processor).pixel_values([images[3]["image"].convert("RGB")])
    with torch.no_grad():
        expected = teacher.model.get_image_features(pixel_values=pixels).pooler_output[0]
    assert np.allclose(loaded.image_embeds[3], (expected / expected.norm()).numpy(), atol=1e-5)


def test_an_interrupted_cache_resumes_and_another_teacher_folder_is_refused(teacher, cache, tmp_path):
    shard = cache / "images" / "shard-00001"
    import shutil

    copy = tmp_path / "feats"
    shutil.copytree(cache, copy)
    shutil.rmtree(copy / "images" / shard.name)
    with pytest.raises(DatasetError, match="incomplete"):
        load_feature_cache(copy, teacher)
    cache_features(teacher, "world:24", "world:20", copy, batch_size=16, shard_size=16, progress=False)
    assert np.array_equal(load_feature_cache(copy, teacher).image_embeds, load_feature_cache(cache).image_embeds)
    with pytest.raises(ConfigError, match="fresh folder"):
        cache_features(teacher, "world:24", "world:21", copy, batch_size=16, shard_size=16, progress=False)


def test_cache_of_another_teacher_or_width_is_refused(teacher, cache, tmp_path):
    other = load_teacher("base")
    other.fingerprint = "0" * 16
    other.teacher_id = "someone/else"
    with pytest.raises(ConfigError, match="teacher"):
        load_feature_cache(cache, other)
    with pytest.raises(ConfigError, match="width"):
        load_feature_cache(cache, projection_dim=teacher.projection_dim + 1)
    with pytest.raises(DatasetError, match="cache-features"):
        load_feature_cache(tmp_path)


def test_empty_text_corpus_is_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(DatasetError, match="no text"):
        load_text_source(str(empty))
    with pytest.raises(DatasetError, match="does not exist"):
        load_text_source(str(tmp_path / "missing.txt"))


def test_image_dataset_without_image_column_is_refused(tmp_path):
    folder = tmp_path / "texts-only"
    datasets.Dataset.from_dict({"caption": ["a red circle."]}).save_to_disk(str(folder))
    with pytest.raises(DatasetError, match="no image column 'image'"):
        load_image_source(str(folder))
    images, _ = load_image_source("world:4")
    images.rename_column("image", "picture").save_to_disk(str(tmp_path / "renamed"))
    with pytest.raises(DatasetError, match="--image-column picture"):
        load_image_source(str(tmp_path / "renamed"))
    assert len(load_image_source(str(tmp_path / "renamed"), column="picture")[0]) == 4


def test_text_readers_plain_file_authors_tsv_and_datasets_folder(tmp_path):
    (tmp_path / "a.txt").write_text("a red circle.\n\nthe blue star.\n")
    (tmp_path / "b.tsv").write_text("key-0\ta red circle.\nkey-1\tthe blue star.\n")
    assert read_text_file(tmp_path / "a.txt") == read_text_file(tmp_path / "b.tsv") == ["a red circle.",
                                                                                       "the blue star."]
    datasets.Dataset.from_dict({"sentence": ["x", "", "y"]}).save_to_disk(str(tmp_path / "d"))
    texts, description = load_text_source(str(tmp_path / "d"), column="sentence")
    assert texts["text"] == ["x", "y"] and description["rows"] == 2
    with pytest.raises(DatasetError, match="--text-column"):
        load_text_source(str(tmp_path / "d"))


def test_one_paired_dataset_is_split_into_unpaired_halves(tmp_path):
    from effhub.data.captions import CaptionWorld, default_cache_dir

    pairs = CaptionWorld(cache_dir=default_cache_dir()).pairs(10, split="unpaired-halves-test")
    pairs.save_to_disk(str(tmp_path / "pairs"))
    images, texts, image_info, text_info = unpaired_sources(str(tmp_path / "pairs"), str(tmp_path / "pairs"),
                                                            text_column="caption")
    assert images["id"] == pairs["id"][0::2] and texts["text"] == pairs["caption"][1::2]
    assert (image_info["rows_taken"], text_info["rows_taken"]) == ("even", "odd")


def test_cache_features_command_line(tmp_path, capsys):
    from effhub.cli import main

    texts = tmp_path / "texts.txt"
    texts.write_text("a red circle.\na blue star.\n")
    output = tmp_path / "feats"
    assert main(["dime-fm", "cache-features", "--teacher", "base", "--images", "world:4", "--texts", str(texts),
                 "--output", str(output), "--batch-size", "4", "--no-progress", "1"]) == 0
    assert "2 texts" in capsys.readouterr().out
    assert main(["dime-fm", "cache-features", "--teacher", "base", "--images", str(tmp_path / "none"), "--texts",
                 str(texts), "--output", str(tmp_path / "other")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_single_object_world_source_has_images_only_from_a_stream_of_its_own():
    from effhub.data.captions import SPLIT_NAMES

    from effhub.models.dime_fm.features_dime_fm import _world

    images, description = load_image_source("world-single:8")
    assert images.column_names == ["id", "image"] and len(images) == 8  # no caption travels with an image
    assert description["kind"] == "world-single"
    world = _world()
    singles = world.single_object(8, seed=0, split=SPLIT_NAMES["distillation"]["single-images"])
    assert [len(json.loads(o)) for o in singles["objects"]] == [1] * 8
    assert np.array_equal(np.asarray(images[0]["image"]), np.asarray(singles[0]["image"]))
    # its pixels are none of the single-object splits the teacher trained or is evaluated on
    for split in (SPLIT_NAMES["teacher"]["single-train"], SPLIT_NAMES["teacher"]["zero-shot"]):
        other = world.single_object(8, seed=0, split=split)
        assert not any(np.array_equal(np.asarray(a), np.asarray(b))
                       for a in images["image"] for b in other["image"])
    with pytest.raises(ConfigError, match="world-single:<N>"):
        load_image_source("world-single:many")


def test_image_rows_decoded_up_front_give_the_pixels_of_a_decode_per_read(teacher):
    from effhub.models.dime_fm.features_dime_fm import ImageRows, PixelCollator

    images, _ = load_image_source("world-single:6")
    preloaded, lazy = ImageRows(images, teacher.processor), ImageRows(images, teacher.processor, preload_bytes=0)
    assert preloaded.pixels is not None and preloaded.pixels.shape == (6, 64, 64, 3) and lazy.pixels is None
    collate = PixelCollator(teacher.processor)
    assert torch_equal(collate([preloaded[i] for i in range(6)])["pixel_values"],
                       collate([lazy[i] for i in range(6)])["pixel_values"])
    # and both equal the processor's own output (the slow path, which arrays of another size take)
    reference = teacher.processor.image_processor(images=[im.convert("RGB") for im in images["image"]],
                                                  return_tensors="pt")["pixel_values"]
    assert np.allclose(collate([preloaded[i] for i in range(6)])["pixel_values"].numpy(), reference.numpy(),
                       atol=1e-5)


def torch_equal(a, b) -> bool:
    return bool((a == b).all())
