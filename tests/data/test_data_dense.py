import numpy as np
import pytest
import torch

from effhub.data import DATASETS, load_dataset
from effhub.data.dense import DenseAugmentation, load_dense_dataset
from effhub.data.dense.collator import DenseCollator
from effhub.errors import ConfigError, DatasetError


def _unit_scale(pixels):
    return pixels / 255


def collator(tasks, normalize=_unit_scale, **kwargs):
    """A dense collator whose normaliser only rescales to [0, 1] (the data layer knows no model's processor)."""
    return DenseCollator(tasks, normalize=normalize, **kwargs)


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


def test_collate_shapes_dtypes_and_normalisation():
    samples = [_sample("a", seed=0), _sample("b", seed=1)]
    samples[1]["depth"] = None
    samples[1]["label_mask"] = {"segmentation": True, "depth": False, "normals": True}
    collate = collator(("segmentation", "depth", "normals"), normalize=lambda pixels: (pixels / 255 - 0.5) / 0.25)
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


def test_flip_negates_the_normals_x_component():
    sample = _sample("a")
    augment = DenseAugmentation(crop_size=(6, 8), scale_range=(1.0, 1.0), flip_probability=1.0)
    collate = collator(("segmentation", "normals"), augmentation=augment)
    plain = collator(("segmentation", "normals"))([sample])
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
    batch = collator(("segmentation", "depth", "normals"), augmentation=augment, generator=generator)(samples)
    assert batch["pixel_values"].shape == (2, 3, 16, 16)
    seg, depth = batch["labels"]["segmentation"][0], batch["labels"]["depth"][0, 0]
    padded = seg == 255  # a 16x16 image at half scale is 8x8: the rest is padding
    assert padded.sum() == 16 * 16 - 64
    assert (depth[padded] == 0).all() and (batch["labels"]["normals"][0][:, padded] == 0).all()
    assert (depth[~padded] > 0).all()
    augment = DenseAugmentation((8, 8))
    seeded = [
        collator(("segmentation",), augmentation=augment, generator=torch.Generator().manual_seed(5))
        for _ in range(2)
    ]
    torch.testing.assert_close(seeded[0](samples)["pixel_values"], seeded[1](samples)["pixel_values"])


def test_collate_errors():
    with pytest.raises(DatasetError, match="different sizes"):
        collator(("depth",))([_sample("a", 6, 8), _sample("b", 8, 8)])
    with pytest.raises(ConfigError, match="known tasks"):
        collator(("segmentation", "albedo"))
    with pytest.raises(ConfigError, match="crop_size"):
        DenseAugmentation(crop_size=(0, 4))
    with pytest.raises(ConfigError, match="normalize"):
        DenseCollator(("depth",), normalize=None)


def test_load_dense_dataset_dispatches(nyuv2_root, scene_cache):
    root, _ = nyuv2_root
    assert len(load_dense_dataset("nyuv2", "train1", root=root, tasks=("depth",))) == 1
    scenes = load_dense_dataset("scenes", "test", config={"height": 16, "width": 16, "num_train": 3, "num_test": 2})
    assert len(scenes) == 2
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dense_dataset("cityscapes", "train")
    with pytest.raises(ConfigError, match="Unknown dense data set"):
        load_dense_dataset("kitti")


def test_every_named_data_set_has_a_reader():
    import importlib

    for name, entry in DATASETS.items():
        module_name, _, function_name = entry.loader.partition(":")
        assert callable(getattr(importlib.import_module(module_name), function_name)), name
    assert load_dataset("scenes", "test", config={"height": 16, "width": 16, "num_train": 3, "num_test": 2}).num_rows
    with pytest.raises(ConfigError, match="Unknown data set"):
        load_dataset("kitti")


def test_collate_reader_rows_in_a_dataloader(nyuv2_root):
    from effhub.data.dense.nyuv2 import load_nyuv2

    root, _ = nyuv2_root
    dataset = load_nyuv2(root, "train")
    collate = collator(("segmentation", "normals", "depth"), augmentation=DenseAugmentation((64, 64)))
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate)))
    assert batch["pixel_values"].shape == (2, 3, 64, 64) and batch["label_mask"].all()
    assert batch["labels"]["segmentation"].max() <= 255
