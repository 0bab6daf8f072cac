"""Tiny fake copies of the real dense data sets, written with the documented file names, dtypes and layouts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

NYU_H, NYU_W = 480, 640
CS_H, CS_W = 256, 512
TASKONOMY_SIDE = 512


@pytest.fixture
def scene_cache(tmp_path, monkeypatch):
    """An empty effhub cache for generated data."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("EFFHUB_CACHE", str(cache))
    return cache


def write_nyuv2(root: Path, with_json: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Two AdaShare-formatted NYU-v2 images; returns what was written per id."""
    rng = np.random.default_rng(0)
    for folder in ("img", "seg", "normal_mask", "depth"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    written = {}
    for stem in ("0001", "0002"):
        image = rng.integers(0, 256, (NYU_H, NYU_W, 3), dtype=np.uint8)
        seg = rng.choice(np.array([0, 1, 5, 39, 255], dtype=np.uint8), size=(NYU_H, NYU_W))
        normal = np.zeros((NYU_H, NYU_W, 3), dtype=np.uint8)
        normal[...] = (128, 128, 255)
        normal[:40, :50] = (255, 255, 255)  # invalid region
        normal[100:120, :] = (255, 128, 128)  # a +x normal
        depth = rng.uniform(0.5, 10.0, (NYU_H, NYU_W)).astype(np.float32)
        depth[5:9, 5:9] = 0.0
        depth[10, 10] = 1e-6  # below the authors' 3e-5 validity threshold
        Image.fromarray(image, mode="RGB").save(root / "img" / f"{stem}.png")
        Image.fromarray(seg, mode="L").save(root / "seg" / f"{stem}.png")
        Image.fromarray(normal, mode="RGB").save(root / "normal_mask" / f"{stem}.png")
        np.save(root / "depth" / f"{stem}.npy", np.asfortranarray(depth))  # the shipped samples are Fortran-ordered
        written[stem] = {"image": image, "segmentation": seg, "normal_png": normal, "depth": depth}
    if with_json:
        a = ["img/0001.png", "seg/0001.png", "normal_mask/0001.png", "depth/0001.npy"]
        b = ["img/0002.png", "seg/0002.png", "normal_mask/0002.png", "depth/0002.npy"]
        splits = {"train": [a, b], "train1": [a], "train2": [b], "test": [a, b]}
        (root / "nyu_v2_3task.json").write_text(json.dumps(splits))
    return written


def write_cityscapes(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """Two AdaShare-formatted CityScapes items per split (train and test)."""
    rng = np.random.default_rng(1)
    written, splits = {}, {}
    for mode in ("train", "test"):
        for folder in ("image", "depth", "label_2", "label_7", "label_19"):
            (root / mode / folder).mkdir(parents=True, exist_ok=True)
        entries = []
        for index in range(2):
            name = f"{index}.npy"
            image = rng.uniform(0.0, 1.0, (CS_H, CS_W, 3)).astype(np.float32)
            depth = rng.uniform(0.0, 0.5, (CS_H, CS_W, 1)).astype(np.float32)
            depth[:10, :10] = 0.0
            depth[20, 20] = 1e-6
            label2 = rng.integers(-1, 2, (CS_H, CS_W)).astype(np.int64)
            label7 = rng.integers(-1, 7, (CS_H, CS_W)).astype(np.int64)
            label19 = rng.integers(-1, 19, (CS_H, CS_W)).astype(np.int64)
            arrays = {"image": image, "depth": depth, "label_2": label2, "label_7": label7, "label_19": label19}
            for folder, array in arrays.items():
                np.save(root / mode / folder / name, array)
            entries.append([f"{mode}/{folder}/{name}" for folder in arrays])
            written[f"{mode}/image/{index}"] = arrays
        splits[mode] = entries
    splits["train1"], splits["train2"] = splits["train"][:1], splits["train"][1:]
    (root / "cityscape.json").write_text(json.dumps(splits))
    return written


def _png16(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array.astype(np.uint16)).save(path)


def write_taskonomy(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """One building, two views of Tiny-Taskonomy with the standard file names, plus the split and prior files."""
    rng = np.random.default_rng(2)
    domains = {
        "rgb": "rgb",
        "segment_semantic": "segmentsemantic",
        "normal": "normal",
        "depth_zbuffer": "depth_zbuffer",
        "keypoints2d": "keypoints2d",
        "edge_texture": "edge_texture",
    }
    for folder in domains:
        (root / "b1" / folder).mkdir(parents=True, exist_ok=True)
    side = TASKONOMY_SIDE
    written, entries = {}, []
    for view in ("point_0_view_0", "point_1_view_0"):
        paths = {folder: f"b1/{folder}/{view}_domain_{domain}.png" for folder, domain in domains.items()}
        rgb = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        rgb[:, :, 0] = (np.arange(side) // 2 % 256)[:, None]  # red encodes the row, to check the resize
        seg = rng.choice(np.array([0, 1, 2, 17], dtype=np.uint8), size=(side, side))
        normal = np.clip(np.array([127, 127, 255]) + rng.integers(-3, 4, (side, side, 3)), 0, 255).astype(np.uint8)
        depth = rng.integers(512, 20000, (side, side)).astype(np.uint16)
        depth[:64, :64] = 65535  # masked
        keypoints = rng.integers(0, 600, (side, side)).astype(np.uint16)
        edges = rng.integers(0, 6000, (side, side)).astype(np.uint16)
        Image.fromarray(rgb, mode="RGB").save(root / paths["rgb"])
        Image.fromarray(seg, mode="L").save(root / paths["segment_semantic"])
        Image.fromarray(normal, mode="RGB").save(root / paths["normal"])
        _png16(depth, root / paths["depth_zbuffer"])
        _png16(keypoints, root / paths["keypoints2d"])
        _png16(edges, root / paths["edge_texture"])
        entries.append([paths[folder] for folder in domains])
        written[f"b1/rgb/{view}_domain_rgb"] = {
            "rgb": rgb, "segmentation": seg, "normal": normal, "depth": depth, "keypoints": keypoints, "edges": edges,
        }  # fmt: skip
    splits = {"train": entries, "train1": entries[:1], "train2": entries[1:], "test": entries}
    splits["test_small"] = entries[:1]
    (root / "taskonomy.json").write_text(json.dumps(splits))
    np.save(root / "semseg_prior_factor.npy", np.linspace(0.5, 9.0, 17).astype(np.float64))
    return written


@pytest.fixture
def nyuv2_writer():
    """The NYU-v2 fixture writer, for tests that need a variant of the layout."""
    return write_nyuv2


_WRITTEN: dict[str, dict[str, dict[str, np.ndarray]]] = {}


def _fresh_copy(tmp_path_factory, tmp_path, name, writer):
    """A per-test copy of a data set written once per session (tests may delete or overwrite its files)."""
    pristine = tmp_path_factory.getbasetemp() / f"pristine-{name}"
    if name not in _WRITTEN or not pristine.exists():
        shutil.rmtree(pristine, ignore_errors=True)
        _WRITTEN[name] = writer(pristine)
    root = tmp_path / name
    shutil.copytree(pristine, root)
    return root, _WRITTEN[name]


@pytest.fixture
def nyuv2_root(tmp_path_factory, tmp_path):
    return _fresh_copy(tmp_path_factory, tmp_path, "nyu_v2", write_nyuv2)


@pytest.fixture
def cityscapes_root(tmp_path_factory, tmp_path):
    return _fresh_copy(tmp_path_factory, tmp_path, "cityscapes", write_cityscapes)


@pytest.fixture
def taskonomy_root(tmp_path_factory, tmp_path):
    return _fresh_copy(tmp_path_factory, tmp_path, "taskonomy", write_taskonomy)
