import numpy as np
import pytest
import torch

from effhub.data.dense import (
    CAFFE_BGR_MEAN,
    DenseAugmentation,
    DenseCollator,
    SplitIds,
    load_dense_dataset,
    split_ids,
    split_train,
)
from effhub.errors import ConfigError, DatasetError


def _sample(identifier, height=6, width=8, seed=0):
    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(height, width, 3)).astype(np.float32)
    return {
        "id": identifier,
        "image": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        "segmentation": rng.integers(0, 5, (height, width)).astype(np.uint8),
        "depth": rng.uniform(1, 5, (height, width)).astype(np.float32),
        "normals": normals / np.linalg.norm(normals, axis=-1, keepdims=True),
        "label_mask": {"segmentation": True, "depth": True, "normals": True},
    }


def test_split_is_seeded_disjoint_and_order_free():
    ids = [f"img{i:03d}" for i in range(101)]
    split = split_ids(ids, val_fraction=0.1, seed=7)
    assert len(split.val) == 10 and len(split.train1) == 46 and len(split.train2) == 45
    parts = [set(split.train1), set(split.train2), set(split.val)]
    assert set().union(*parts) == set(ids) and sum(map(len, parts)) == len(ids)
    assert split_ids(list(reversed(ids)), 0.1, 7) == split  # row order does not matter
    assert split_ids(ids, 0.1, 8) != split
    assert split_ids(ids, 0.0, 7).val == ()


def test_split_round_trip_and_select(tmp_path):
    import datasets

    dataset = datasets.Dataset.from_dict({"id": [f"s{i}" for i in range(9)], "value": list(range(9))})
    split = split_ids(dataset, val_fraction=0.2, seed=1)
    path = split.save(tmp_path / "run" / "split.json")
    assert SplitIds.load(path) == split
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]  # no temporary file left
    train1, train2, val = split_train(dataset, 0.2, 1)
    assert train1["id"] == list(split.train1) and val["id"] == list(split.val) and len(train2) == len(split.train2)
    smaller = dataset.select(range(5))
    with pytest.raises(DatasetError, match="lacks"):
        split.select(smaller)


def test_split_errors():
    with pytest.raises(ConfigError, match="val_fraction"):
        split_ids(["a", "b", "c"], val_fraction=1.0)
    with pytest.raises(DatasetError, match="at least 3"):
        split_ids(["a", "b"], val_fraction=0.5)
    with pytest.raises(DatasetError, match="unique"):
        split_ids(["a", "a", "b", "c"])


def test_collate_shapes_dtypes_and_normalisation():
    samples = [_sample("a", seed=0), _sample("b", seed=1)]
    samples[1]["depth"] = None
    samples[1]["label_mask"] = {"segmentation": True, "depth": False, "normals": True}
    collate = DenseCollator(("segmentation", "depth", "normals"), image_mean=(0.5,) * 3, image_std=(0.25,) * 3)
    batch = collate(samples)
    assert batch["pixel_values"].shape == (2, 3, 6, 8) and batch["pixel_values"].dtype == torch.float32
    expected = (samples[0]["image"][2, 3, 1] / 255 - 0.5) / 0.25
    assert batch["pixel_values"][0, 1, 2, 3].item() == pytest.approx(expected, abs=1e-5)
    labels = batch["labels"]
    assert labels["segmentation"].shape == (2, 6, 8) and labels["segmentation"].dtype == torch.long
    assert labels["depth"].shape == (2, 1, 6, 8) and labels["normals"].shape == (2, 3, 6, 8)
    np.testing.assert_array_equal(labels["normals"][0].permute(1, 2, 0).numpy(), samples[0]["normals"])
    assert batch["label_mask"].tolist() == [[True, True, True], [True, False, True]]
    assert (labels["depth"][1] == 0).all()  # a missing label is filled with the invalid value
    assert batch["ids"] == ["a", "b"]


def test_caffe_convention_reverses_channels():
    sample = _sample("a")
    batch = DenseCollator.adashare_caffe(("segmentation",))([sample])
    b, g, r = (sample["image"][0, 0, 2], sample["image"][0, 0, 1], sample["image"][0, 0, 0])
    expected = np.array([b, g, r], dtype=np.float64) - np.array(CAFFE_BGR_MEAN)
    np.testing.assert_allclose(batch["pixel_values"][0, :, 0, 0].numpy(), expected, rtol=1e-5)


def test_flip_negates_the_normals_x_component():
    sample = _sample("a")
    augment = DenseAugmentation(crop_size=(6, 8), scale_range=(1.0, 1.0), flip_probability=1.0)
    collate = DenseCollator(("segmentation", "normals"), augmentation=augment)
    plain = DenseCollator(("segmentation", "normals"))([sample])
    flipped = collate([sample])
    torch.testing.assert_close(flipped["labels"]["segmentation"], plain["labels"]["segmentation"].flip(-1))
    torch.testing.assert_close(flipped["pixel_values"], plain["pixel_values"].flip(-1))
    normals = plain["labels"]["normals"].flip(-1)
    normals[:, 0] = -normals[:, 0]
    torch.testing.assert_close(flipped["labels"]["normals"], normals)


def test_scale_pad_and_crop_use_invalid_values():
    samples = [_sample("a", 16, 16, seed=2), _sample("b", 12, 20, seed=3)]
    augment = DenseAugmentation(crop_size=(16, 16), scale_range=(0.5, 0.5), flip_probability=0.0)
    generator = torch.Generator().manual_seed(0)
    batch = DenseCollator(("segmentation", "depth", "normals"), augmentation=augment, generator=generator)(samples)
    assert batch["pixel_values"].shape == (2, 3, 16, 16)
    seg, depth = batch["labels"]["segmentation"][0], batch["labels"]["depth"][0, 0]
    padded = seg == 255  # a 16x16 image at half scale is 8x8: the rest is padding
    assert padded.sum() == 16 * 16 - 64
    assert (depth[padded] == 0).all() and (batch["labels"]["normals"][0][:, padded] == 0).all()
    assert (depth[~padded] > 0).all()
    augment = DenseAugmentation((8, 8))
    seeded = [
        DenseCollator(("segmentation",), augmentation=augment, generator=torch.Generator().manual_seed(5))
        for _ in range(2)
    ]
    torch.testing.assert_close(seeded[0](samples)["pixel_values"], seeded[1](samples)["pixel_values"])


def test_collate_errors():
    with pytest.raises(DatasetError, match="different sizes"):
        DenseCollator(("depth",))([_sample("a", 6, 8), _sample("b", 8, 8)])
    with pytest.raises(ConfigError, match="known tasks"):
        DenseCollator(("segmentation", "albedo"))
    with pytest.raises(ConfigError, match="crop_size"):
        DenseAugmentation(crop_size=(0, 4))
    with pytest.raises(ConfigError, match="channel_order"):
        DenseCollator(("depth",), channel_order="RBG")


def test_load_dense_dataset_dispatches(nyuv2_root, scene_cache):
    root, _ = nyuv2_root
    assert len(load_dense_dataset("nyuv2", "train1", root=root, tasks=("depth",))) == 1
    scenes = load_dense_dataset("scenes", "test", config={"height": 16, "width": 16, "num_train": 3, "num_test": 2})
    assert len(scenes) == 2
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dense_dataset("cityscapes", "train")
    with pytest.raises(ConfigError, match="Unknown dense data set"):
        load_dense_dataset("kitti")


def test_collate_reader_rows_in_a_dataloader(nyuv2_root):
    from effhub.data.nyuv2 import load_nyuv2

    root, _ = nyuv2_root
    dataset = load_nyuv2(root, "train")
    collate = DenseCollator(("segmentation", "normals", "depth"), augmentation=DenseAugmentation((64, 64)))
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate)))
    assert batch["pixel_values"].shape == (2, 3, 64, 64) and batch["label_mask"].all()
    assert batch["labels"]["segmentation"].max() <= 255
