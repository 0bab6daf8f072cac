"""AdaShare's data side: the train1/train2/val carving and the processor as the training collator's normaliser."""

import numpy as np
import pytest
import torch

from effhub.data.dense.collator import DenseCollator
from effhub.errors import ConfigError, DatasetError
from effhub.models.adashare.image_processing_pil_adashare import AUTHORS_BGR_MEAN, AdaShareImageProcessorPil
from effhub.models.adashare.training_adashare import SplitIds, make_collator, split_ids, split_train


def _sample(identifier, height=6, width=8, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "id": identifier,
        "image": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        "segmentation": rng.integers(0, 5, (height, width)).astype(np.uint8),
        "label_mask": {"segmentation": True},
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


@pytest.mark.parametrize("authors", [False, True], ids=["default", "authors-checkpoint"])
def test_collator_pixels_equal_the_processor(authors):
    processor = AdaShareImageProcessorPil.for_authors_checkpoint() if authors else AdaShareImageProcessorPil()
    samples = [_sample("a", 12, 10, seed=0), _sample("b", 12, 10, seed=1)]
    batch = DenseCollator(("segmentation",), normalize=processor.normalize_pixels)(samples)
    expected = processor([sample["image"] for sample in samples], do_resize=False, return_tensors="pt")
    torch.testing.assert_close(batch["pixel_values"], expected["pixel_values"], atol=1e-5, rtol=0)


def test_authors_convention_reverses_channels():
    sample = _sample("a")
    normalize = AdaShareImageProcessorPil.for_authors_checkpoint().normalize_pixels
    batch = DenseCollator(("segmentation",), normalize=normalize)([sample])
    b, g, r = (sample["image"][0, 0, 2], sample["image"][0, 0, 1], sample["image"][0, 0, 0])
    expected = np.array([b, g, r], dtype=np.float64) - np.array(AUTHORS_BGR_MEAN)
    np.testing.assert_allclose(batch["pixel_values"][0, :, 0, 0].numpy(), expected, rtol=1e-5)


def _old_formula(image, mean, std, rescale_factor, bgr):
    """The collator's own normalisation before the processor took it over, op for op."""
    mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(std, dtype=torch.float32)[:, None, None]
    pixels = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1).float()
    if bgr:
        pixels = pixels.flip(0)
    return (pixels * rescale_factor - mean) / std


@pytest.mark.parametrize("convention", ["imagenet", "caffe_bgr"])
def test_demo_collator_is_bit_identical_to_the_old_formula(convention):
    from effhub.recipes import load_recipe

    recipe = load_recipe("adashare", "demo", [f"input_convention={convention}"])
    samples = [_sample("a", 16, 16, seed=3), _sample("b", 16, 16, seed=4)]
    batch = make_collator(recipe, ("segmentation",), train=False)(samples)
    if convention == "caffe_bgr":
        old = [_old_formula(s["image"], AUTHORS_BGR_MEAN, (1.0, 1.0, 1.0), 1.0, True) for s in samples]
    else:
        old = [_old_formula(s["image"], (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1 / 255, False) for s in samples]
    assert torch.equal(batch["pixel_values"], torch.stack(old))
