import json
import os

import numpy as np
import pytest

from effhub.data.dense.cityscapes import CITYSCAPES_19_CLASSES, cityscapes_label_ids_to_train_ids, load_cityscapes
from effhub.errors import ConfigError, DatasetError


def test_values_match_the_written_arrays(cityscapes_root):
    root, written = cityscapes_root
    dataset = load_cityscapes(root, "train")
    sample = dataset[1]
    assert sample["id"] == "train/image/1"
    truth = written[sample["id"]]
    np.testing.assert_array_equal(sample["image"], np.rint(truth["image"].astype(np.float64) * 255).astype(np.uint8))
    seg = sample["segmentation"]
    assert seg.dtype == np.uint8 and seg.shape == (256, 512)
    np.testing.assert_array_equal(seg == 255, truth["label_19"] == -1)  # -1 becomes the shared ignore value
    keep = truth["label_19"] >= 0
    np.testing.assert_array_equal(seg[keep], truth["label_19"][keep])
    depth = sample["depth"]
    assert depth.dtype == np.float32 and depth.shape == (256, 512)
    assert depth[20, 20] == 0 and (depth[:10, :10] == 0).all()
    valid = truth["depth"][..., 0] > 3e-5
    np.testing.assert_array_equal(depth[valid], truth["depth"][..., 0][valid])  # units kept (inverse depth)
    assert sample["label_mask"] == {"segmentation": True, "depth": True}


def test_num_classes_picks_the_label_file(cityscapes_root):
    root, written = cityscapes_root
    sample = load_cityscapes(root, "test", num_classes=7, tasks=("segmentation",))[0]
    truth = written[sample["id"]]["label_7"]
    np.testing.assert_array_equal(sample["segmentation"], np.where(truth < 0, 255, truth))
    assert "depth" not in sample
    assert sample["segmentation"].max(initial=0) <= 255
    with pytest.raises(ConfigError, match="num_classes"):
        load_cityscapes(root, num_classes=5)
    # 19-class labels read as 7 classes hold values the 7-class setting does not know
    splits = json.loads((root / "cityscape.json").read_text())
    splits["wrong"] = [[e[0], e[1], e[2], e[4], e[4]] for e in splits["train"]]
    (root / "cityscape.json").write_text(json.dumps(splits))
    with pytest.raises(DatasetError, match="num_classes=7"):
        load_cityscapes(root, "wrong", num_classes=7)[0]


def test_train_id_mapping():
    label_ids = np.array([[7, 8, 26, 33], [0, -1, 34, 255], [24, 23, 9, 31]])
    train_ids = cityscapes_label_ids_to_train_ids(label_ids)
    assert train_ids.dtype == np.uint8
    np.testing.assert_array_equal(train_ids, [[0, 1, 13, 18], [255, 255, 255, 255], [11, 10, 255, 16]])
    assert CITYSCAPES_19_CLASSES[13] == "car" and len(CITYSCAPES_19_CLASSES) == 19


def test_bad_paths_raise_dataset_errors(cityscapes_root, tmp_path):
    root, _ = cityscapes_root
    with pytest.raises(DatasetError, match="cityscape.json"):
        load_cityscapes(tmp_path / "missing")
    os.remove(root / "train" / "depth" / "0.npy")
    with pytest.raises(DatasetError, match="train/depth/0.npy"):
        load_cityscapes(root, "train")
    assert len(load_cityscapes(root, "train", tasks=("segmentation",))) == 2  # depth is not needed then
    os.remove(root / "cityscape.json")
    with pytest.raises(DatasetError, match="split file .* is missing"):
        load_cityscapes(root, "train")


def test_image_of_the_wrong_shape(cityscapes_root):
    root, _ = cityscapes_root
    np.save(root / "test" / "image" / "0.npy", np.zeros((256, 512), dtype=np.float32))
    with pytest.raises(DatasetError, match=r"\(H, W, 3\)"):
        load_cityscapes(root, "test")[0]
