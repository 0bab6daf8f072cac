"""Every dense reader on garbage files: a `DatasetError` naming the file, never a decoder's own exception."""

import json
import pickle

import numpy as np
import pytest

from effhub.data.dense.cityscapes import load_cityscapes
from effhub.data.dense.nyuv2 import load_nyuv2
from effhub.data.dense.taskonomy import load_taskonomy, load_taskonomy_class_weights
from effhub.errors import DatasetError


def _garbage_image(path):
    path.write_bytes(b"this is not an image at all")


def _garbage_npy(path):
    path.write_bytes(pickle.dumps({"not": "an array"}))  # numpy refuses pickled data


def _pickled_npy(path):
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize("relative,task", [("img/0001.png", "image"), ("seg/0001.png", "segmentation"),
                                           ("normal_mask/0001.png", "normals")])
def test_nyuv2_garbage_image(nyuv2_root, relative, task):
    root, _ = nyuv2_root
    _garbage_image(root / relative)
    dataset = load_nyuv2(root, "train1")
    with pytest.raises(DatasetError, match=f"NYU-v2 file '.*{relative}' is not a readable image"):
        dataset[0]


@pytest.mark.parametrize("writer", [_garbage_npy, _pickled_npy])
def test_nyuv2_garbage_npy(nyuv2_root, writer):
    root, _ = nyuv2_root
    writer(root / "depth" / "0001.npy")
    with pytest.raises(DatasetError, match="NYU-v2 file '.*depth/0001.npy' is not a readable .npy array"):
        load_nyuv2(root, "train1")[0]


@pytest.mark.parametrize("writer", [_garbage_npy, _pickled_npy])
@pytest.mark.parametrize("folder", ["image", "depth", "label_7"])
def test_cityscapes_garbage_npy(cityscapes_root, writer, folder):
    root, _ = cityscapes_root
    writer(root / "train" / folder / "0.npy")
    with pytest.raises(DatasetError, match=f"CityScapes file '.*train/{folder}/0.npy' is not a readable .npy"):
        load_cityscapes(root, "train1", num_classes=7)[0]


@pytest.mark.parametrize("folder", ["rgb", "segment_semantic", "depth_zbuffer"])
def test_taskonomy_garbage_image(taskonomy_root, folder):
    root, _ = taskonomy_root
    entry = json.loads((root / "taskonomy.json").read_text())["train1"][0]
    relative = next(path for path in entry if f"/{folder}/" in path)
    _garbage_image(root / relative)
    with pytest.raises(DatasetError, match=f"Taskonomy file '.*{relative}' is not a readable image"):
        load_taskonomy(root, "train1")[0]


@pytest.mark.parametrize("writer", [_garbage_npy, _pickled_npy])
def test_taskonomy_garbage_class_weights(taskonomy_root, writer):
    root, _ = taskonomy_root
    writer(root / "semseg_prior_factor.npy")
    with pytest.raises(DatasetError, match="semseg_prior_factor.npy' is not a readable .npy"):
        load_taskonomy_class_weights(root)
