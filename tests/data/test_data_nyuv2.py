import json
import os

import numpy as np
import pytest

from effhub.data.dense.schema import dataset_ids
from effhub.data.dense.nyuv2 import load_nyuv2
from effhub.errors import ConfigError, DatasetError


def test_values_match_the_written_files(nyuv2_root):
    root, written = nyuv2_root
    dataset = load_nyuv2(root, split="train")
    assert len(dataset) == 2
    sample = dataset[0]
    truth = written[sample["id"]]
    assert sample["id"] == "0001"
    np.testing.assert_array_equal(sample["image"], truth["image"])
    assert sample["image"].dtype == np.uint8
    np.testing.assert_array_equal(sample["segmentation"], truth["segmentation"])
    assert sample["segmentation"].dtype == np.uint8 and 255 in sample["segmentation"]
    depth = sample["depth"]
    assert depth.dtype == np.float32 and depth.shape == (480, 640)
    assert depth[10, 10] == 0.0 and (depth[5:9, 5:9] == 0).all()  # below 3e-5 and zeros are invalid
    valid = truth["depth"] > 3e-5
    np.testing.assert_array_equal(depth[valid], truth["depth"][valid])  # metres, unchanged
    normals = sample["normals"]
    assert normals.dtype == np.float32 and normals.shape == (480, 640, 3)
    assert (normals[:40, :50] == 0).all()  # (255, 255, 255) marks invalid pixels
    np.testing.assert_allclose(normals[200, 300], np.array([1, 1, 255]) / np.linalg.norm([1, 1, 255]), atol=1e-6)
    np.testing.assert_allclose(normals[110, 300], np.array([255, 1, 1]) / np.linalg.norm([255, 1, 1]), atol=1e-6)
    assert sample["label_mask"] == {"segmentation": True, "normals": True, "depth": True}


def test_splits_and_task_subsets(nyuv2_root):
    root, _ = nyuv2_root
    assert dataset_ids(load_nyuv2(root, "train1")) == ["0001"]
    assert dataset_ids(load_nyuv2(root, "train2")) == ["0002"]
    two_task = load_nyuv2(root, "test", tasks=("segmentation", "normals"))[1]
    assert set(two_task) == {"id", "image", "segmentation", "normals", "label_mask"}
    with pytest.raises(ConfigError, match="keypoints"):
        load_nyuv2(root, tasks=("segmentation", "keypoints"))


def test_missing_label_path_gives_a_false_mask(nyuv2_root):
    root, _ = nyuv2_root
    splits = json.loads((root / "nyu_v2_3task.json").read_text())
    splits["partial"] = [["img/0001.png", "seg/0001.png", None, ""]]
    (root / "nyu_v2_3task.json").write_text(json.dumps(splits))
    sample = load_nyuv2(root, "partial")[0]
    assert sample["label_mask"] == {"segmentation": True, "normals": False, "depth": False}
    assert sample["normals"] is None and sample["depth"] is None


def test_without_json_only_the_test_split_is_built_from_the_folders(tmp_path, nyuv2_writer):
    root = tmp_path / "nyu"
    nyuv2_writer(root, with_json=False)
    os.remove(root / "depth" / "0002.npy")  # incomplete ids are skipped, as upstream
    dataset = load_nyuv2(root, "test")
    assert dataset.with_format(None)["id"][:] == ["0001"]
    assert not (root / "nyu_v2_3task.json").exists()  # nothing is written into the data folder
    with pytest.raises(DatasetError, match="nyu_v2_3task.json"):
        load_nyuv2(root, "train")


def test_bad_paths_raise_dataset_errors(nyuv2_root, tmp_path):
    root, _ = nyuv2_root
    with pytest.raises(DatasetError, match="does not exist") as error:
        load_nyuv2(tmp_path / "nowhere")
    assert "img/NNNN.png" in str(error.value)
    with pytest.raises(DatasetError, match="no split 'val'"):
        load_nyuv2(root, "val")
    os.remove(root / "seg" / "0002.png")
    with pytest.raises(DatasetError, match="seg/0002.png"):
        load_nyuv2(root, "train")
    lazy = load_nyuv2(root, "train", verify_files=False)  # decoding is lazy: the error comes on access
    lazy[0]
    with pytest.raises(DatasetError, match="seg/0002.png"):
        lazy[1]
    (root / "nyu_v2_3task.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_nyuv2(root, "train")


def test_out_of_range_class_ids_are_reported(nyuv2_root):
    from PIL import Image

    root, _ = nyuv2_root
    Image.fromarray(np.full((480, 640), 40, dtype=np.uint8), mode="L").save(root / "seg" / "0001.png")
    with pytest.raises(DatasetError, match="outside 0..39"):
        load_nyuv2(root, "train")[0]
