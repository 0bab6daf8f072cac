import time

import numpy as np
import pytest

from effhub.data.dense.scenes import (
    OBJECT_TYPES,
    SCENES_V1,
    SceneConfig,
    _camera_rays,
    load_scenes,
    render_scene,
    scene_class_names,
)
from effhub.errors import ConfigError

SMALL = SceneConfig(height=32, width=40, num_train=12, num_test=4, seed=3)


def test_rendering_is_deterministic_and_splits_differ():
    first, again = render_scene(SMALL, "train", 5), render_scene(SMALL, "train", 5)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    other = render_scene(SMALL, "test", 5)
    assert not np.array_equal(first["image"], other["image"])
    reseeded = render_scene(SceneConfig(height=32, width=40, seed=4), "train", 5)
    assert not np.array_equal(first["depth"], reseeded["depth"])


def test_labels_agree_with_each_other():
    for index in range(10):
        scene = render_scene(SMALL, "train", index)
        seg, depth, normals = scene["segmentation"], scene["depth"], scene["normals"]
        assert scene["image"].dtype == np.uint8 and seg.dtype == np.uint8
        assert depth.dtype == np.float32 and normals.dtype == np.float32 and normals.shape == (32, 40, 3)
        labelled = seg != 255
        np.testing.assert_array_equal(depth > 0, labelled)  # sky and far ground: no label, no depth, no normal
        np.testing.assert_allclose(np.linalg.norm(normals[labelled], axis=-1), 1.0, atol=1e-5)
        assert (normals[~labelled] == 0).all()
        assert seg[labelled].max() < SMALL.num_classes
        # every visible surface faces the camera: the normal points against the viewing ray
        rays = _camera_rays(SMALL).reshape(32, 40, 3)
        points = rays * depth[..., None]
        assert (np.einsum("hwc,hwc->hw", normals, points)[labelled] < 0).all()


def test_ground_plane_depth_and_normals_are_analytic():
    config = SceneConfig(height=24, width=24, min_objects=0, max_objects=0, noise_std=0.0)
    scene = render_scene(config, "train", 0)
    ground = scene["segmentation"] == 0
    assert ground.sum() > 100 and set(np.unique(scene["segmentation"])) <= {0, 255}
    normal = scene["normals"][ground]
    np.testing.assert_allclose(normal, np.broadcast_to(normal[0], normal.shape), atol=1e-6)  # one plane
    rays = _camera_rays(config).reshape(24, 24, 3)
    points = rays[ground] * scene["depth"][ground][:, None]
    offsets = points @ normal[0]  # n . X is the same for every point of a plane: minus the camera height
    np.testing.assert_allclose(offsets, offsets[0], atol=1e-4)
    assert -2.0 - 1e-4 <= offsets[0] <= -1.2 + 1e-4  # camera heights are drawn in [1.2, 2.0] m


def test_classes_are_shape_times_texture():
    names = scene_class_names(SCENES_V1.num_classes)
    assert names[0] == "ground" and len(names) == 7
    used = OBJECT_TYPES[: SCENES_V1.num_classes - 1]
    for shape in {shape for shape, _ in used}:  # no silhouette alone names a class
        assert sum(s == shape for s, _ in used) >= 2
    for texture in {texture for _, texture in used}:  # no texture alone names a class
        assert sum(t == texture for _, t in used) >= 2


def test_generator_is_fast():
    rays = _camera_rays(SCENES_V1)
    start = time.perf_counter()
    for index in range(100):
        render_scene(SCENES_V1, "train", index, rays)
    assert time.perf_counter() - start < 10.0  # about 0.5 s on one core; 1000 scenes stay well under a minute


def test_load_caches_on_disk(scene_cache):
    train = load_scenes(SMALL, "train")
    assert len(train) == 12 and train[0]["id"] == "train-000000"
    row = train[7]
    assert row["image"].dtype == np.uint8 and row["image"].shape == (32, 40, 3)
    assert row["segmentation"].dtype == np.uint8 and row["depth"].dtype == np.float32
    assert row["normals"].shape == (32, 40, 3)
    assert row["label_mask"] == {"segmentation": True, "depth": True, "normals": True}
    np.testing.assert_array_equal(row["depth"], render_scene(SMALL, "train", 7)["depth"])
    folder = scene_cache / "scenes" / SMALL.cache_key()
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "train"]  # no staging folder left behind
    arrow = next((folder / "train").glob("*.arrow"))
    stamp = arrow.stat().st_mtime_ns
    again = load_scenes(SMALL.to_dict(), "train")
    assert arrow.stat().st_mtime_ns == stamp and len(again) == 12
    test = load_scenes(SMALL, "test")
    assert len(test) == 4 and test[0]["id"] == "test-000000"
    assert SceneConfig(height=32, width=40, num_train=12, num_test=4, seed=4).cache_key() != SMALL.cache_key()


def test_bad_configs():
    with pytest.raises(ConfigError, match="num_classes"):
        SceneConfig(num_classes=11)
    with pytest.raises(ConfigError, match="not an int"):
        SceneConfig(height=32.5)
    with pytest.raises(ConfigError, match="min_objects"):
        SceneConfig(min_objects=4, max_objects=2)
    with pytest.raises(ConfigError, match="no field"):
        SceneConfig.from_dict({"size": 64})
    with pytest.raises(ConfigError, match="split"):
        render_scene(SMALL, "validation", 0)
