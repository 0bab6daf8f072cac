import math
import os

import numpy as np
import pytest

from effhub.data.dense.taskonomy import load_taskonomy, load_taskonomy_class_weights
from effhub.errors import ConfigError, DatasetError


def _nearest(array, side=256):
    index = np.arange(side) * array.shape[0] // side
    return array[index][:, index]


def test_values_match_the_written_files(taskonomy_root):
    root, written = taskonomy_root
    sample = load_taskonomy(root, "train")[0]
    truth = written[sample["id"]]
    assert sample["image"].shape == (256, 256, 3) and sample["image"].dtype == np.uint8
    np.testing.assert_array_equal(sample["image"], _nearest(truth["rgb"]))
    np.testing.assert_array_equal(sample["image"][:, 0, 0], (np.arange(256) * 2 // 2) % 256)  # row r <- row 2r

    seg, raw_seg = sample["segmentation"], _nearest(truth["segmentation"])
    assert seg.dtype == np.uint8
    np.testing.assert_array_equal(seg[raw_seg == 0], 255)  # uncertain -> ignore
    np.testing.assert_array_equal(seg[raw_seg == 1], 0)  # background
    np.testing.assert_array_equal(seg[raw_seg == 17], 16)

    raw_depth = _nearest(truth["depth"]).astype(np.float64)
    depth = sample["depth"]
    assert depth.dtype == np.float32 and (depth[:32, :32] == 0).all()  # raw >= 64500 is invalid
    np.testing.assert_allclose(depth[100:, 100:], raw_depth[100:, 100:] / 512.0, rtol=1e-6)  # metres

    normals = sample["normals"]
    assert (normals[:32, :32] == 0).all()  # invalid where depth is
    norms = np.linalg.norm(normals[40:, 40:], axis=-1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    assert normals[100, 100, 2] > 0.99

    for task, clip, raw in (("keypoints", 0.005, truth["keypoints"]), ("edges", 0.08, truth["edges"])):
        expected = np.clip(_nearest(raw) / 2.0**16, 0, clip) / clip * 2 - 1
        np.testing.assert_allclose(sample[task], expected, atol=1e-6)
        assert sample[task].min() >= -1 and sample[task].max() <= 1
    assert set(sample["label_mask"]) == {"segmentation", "normals", "depth", "keypoints", "edges"}


def test_log_depth_and_native_size(taskonomy_root):
    root, written = taskonomy_root
    sample = load_taskonomy(root, "test_small", tasks=("depth",), image_size=None, depth_encoding="log")[0]
    raw = written[sample["id"]]["depth"].astype(np.float64)
    assert sample["depth"].shape == (512, 512)
    expected = np.where(raw < 64500, np.log1p(raw) / math.log(2**16), 0)
    np.testing.assert_allclose(sample["depth"], expected, rtol=1e-6)
    with pytest.raises(ConfigError, match="depth_encoding"):
        load_taskonomy(root, depth_encoding="inverse")


def test_class_weights_and_errors(taskonomy_root, tmp_path):
    root, _ = taskonomy_root
    weights = load_taskonomy_class_weights(root)
    assert weights.dtype == np.float64 and weights.shape == (17,)
    with pytest.raises(DatasetError, match="taskonomy.json"):
        load_taskonomy(tmp_path / "none")
    os.remove(root / "semseg_prior_factor.npy")
    with pytest.raises(DatasetError, match="semseg_prior_factor.npy"):
        load_taskonomy(root)
    assert len(load_taskonomy(root, tasks=("depth", "edges"))) == 2  # the prior is only needed for segmentation


def test_segmentation_values_beyond_17_are_reported(taskonomy_root):
    from PIL import Image

    root, written = taskonomy_root
    name = next(iter(written)).replace("rgb", "segment_semantic", 1).replace("domain_rgb", "domain_segmentsemantic")
    Image.fromarray(np.full((512, 512), 18, dtype=np.uint8), mode="L").save(root / f"{name}.png")
    with pytest.raises(DatasetError, match="outside 0..17"):
        load_taskonomy(root, "train", tasks=("segmentation",))[0]
