"""Video data: the generated clips, the frame-folder readers (fixtures built from the format facts in the readers'
docstring), and video files through PyAV; bad input raises `DatasetError`."""

import numpy as np
import pytest
from PIL import Image

from effhub.data import load_dataset
from effhub.data.video.clips import (
    CLIPS_V1,
    CLIPS_V2,
    CLIPS_V3,
    EVIDENCE_KINDS,
    FRAME_KINDS,
    ClipConfig,
    clip_config,
    generate_clips,
)
from effhub.errors import ConfigError, DatasetError


def test_clips_are_deterministic_and_half_evidence():
    config = ClipConfig(num_frames=8, size=32)
    first, second = generate_clips(6, seed=4, config=config), generate_clips(6, seed=4, config=config)
    assert np.array_equal(first["frames"], second["frames"])
    assert ((first["frame_kind"] == FRAME_KINDS.index("evidence")).sum(1) == 4).all()
    repeated = np.argwhere(first["frame_kind"] == FRAME_KINDS.index("repeated"))
    for clip, t in repeated:
        assert np.array_equal(first["frames"][clip, t], first["frames"][clip, t - 1])


def test_frozen_generator_fingerprint():
    """The generator the benchmark results were measured on: any change to CLIPS_V1 or to the drawing code changes
    this fingerprint (then freeze a new version, keep this one readable, and re-run the benchmark)."""
    import hashlib

    assert CLIPS_V1.to_dict() == {"num_frames": 8, "size": 32, "evidence_fraction": 0.5, "noise": 0.05,
                                  "min_radius": 8, "max_radius": 12, "stripe_period": 8, "blur": 4,
                                  "occlusion": 0.85, "background": (0.0, 0.25), "stripe_contrast": 0.55,
                                  "faint_fraction": 0.0, "faint_stripe_contrast": 0.15}
    clips = generate_clips(4, seed=0)
    digest = hashlib.sha256()
    for key in ("frames", "label", "frame_kind"):
        digest.update(np.ascontiguousarray(clips[key]).tobytes())
    assert digest.hexdigest() == "78dccdc78b378f27896b45cea3cc021d634bd62793543f7660f5155e0ff86ca6"


def _fingerprint(clips) -> str:
    import hashlib

    digest = hashlib.sha256()
    for key in ("frames", "label", "frame_kind"):
        digest.update(np.ascontiguousarray(clips[key]).tobytes())
    return digest.hexdigest()


def test_frozen_generator_fingerprint_version_2():
    """Version 2, the generator of the benchmark results before version 3 (it stays readable, as version 1 does)."""
    assert CLIPS_V2.to_dict() == {**CLIPS_V1.to_dict(), "faint_fraction": 0.5, "faint_stripe_contrast": 0.15}
    assert _fingerprint(generate_clips(4, seed=0, config=CLIPS_V2)) == \
        "fed6ed1d428f165e6a6f400725e96914ae78ce87bc71a890fb2e2bf3e3cab769"
    assert clip_config(2) == CLIPS_V2 and clip_config(1, num_frames=4).num_frames == 4
    with pytest.raises(ConfigError, match="clips version 4"):
        clip_config(4)


def test_frozen_generator_fingerprint_version_3():
    """Version 3, the generator the current benchmark results were measured on: version 2 with fainter stripes (the
    same random draws, so the same classes and frame kinds; only the faint clips' pixels differ)."""
    assert CLIPS_V3.to_dict() == {**CLIPS_V2.to_dict(), "faint_stripe_contrast": 0.05}
    assert _fingerprint(generate_clips(4, seed=0, config=CLIPS_V3)) == \
        "ac255d79ce5f686fed5bfadf540adbf306cfcf633c189b534f83324204b09873"
    assert clip_config(3) == CLIPS_V3
    version_2, version_3 = generate_clips(40, seed=3, config=CLIPS_V2), generate_clips(40, seed=3, config=CLIPS_V3)
    assert np.array_equal(version_2["frame_kind"], version_3["frame_kind"])
    faint = np.isin(version_3["frame_kind"], [FRAME_KINDS.index("faint evidence")]).any(1)
    assert faint.any() and (~faint).any()
    assert np.array_equal(version_2["frames"][~faint], version_3["frames"][~faint])
    assert not np.array_equal(version_2["frames"][faint], version_3["frames"][faint])


def test_version_2_has_faint_clips_and_half_evidence_frames():
    clips = generate_clips(200, seed=1, config=CLIPS_V2)
    kinds = clips["frame_kind"]
    evidence = np.isin(kinds, EVIDENCE_KINDS)
    assert (evidence.sum(1) == 4).all()  # 50% of the frames, clear or faint
    faint = (kinds == FRAME_KINDS.index("faint evidence")).any(1)
    assert 0.4 < faint.mean() < 0.6
    assert not ((kinds == 0).any(1) & faint).any()  # a clip is clear or faint, never both
    # without faint clips the same seed draws version 1's clips (version 2 only adds one draw per clip)
    assert not np.isin(generate_clips(20, seed=1)["frame_kind"], [FRAME_KINDS.index("faint evidence")]).any()


def _fixture(root, name="activitynet"):
    """Two videos of 20 frames (64 x 48 RGB JPEGs), as in the format notes."""
    separator, template = (" ", "image_{:05d}.jpg") if name in ("activitynet", "fcvid") else (";", "{:05d}.jpg")
    for video in ("v1", "v2"):
        folder = root / "videos" / video
        folder.mkdir(parents=True)
        for k in range(1, 21):
            Image.fromarray(np.full((48, 64, 3), k * 10, dtype=np.uint8)).save(folder / template.format(k))
    lines = [separator.join(["videos/v1", "1", "20", "3"]), separator.join(["videos/v2", "1", "20", "7"])]
    lists = {"mini-kinetics": ("mini_train.txt", "mini_val.txt")}.get(name, ("train.txt", "val.txt"))
    for file in lists:
        (root / file).write_text("\n".join(lines) + "\n")
    classes = {"activitynet": 200, "fcvid": 239, "mini-sports1m": 487}.get(name)
    if classes:
        (root / "categories.txt").write_text("\n".join(f"class {i}" for i in range(classes)) + "\n")
    return root


@pytest.mark.parametrize("name", ["activitynet", "fcvid", "mini-kinetics", "mini-sports1m"])
def test_frame_folder_readers(tmp_path, name):
    options = {"filter_video": 0} if name == "mini-kinetics" else {}
    dataset = load_dataset(name, "train", root=_fixture(tmp_path, name), kind="video", num_frames=4, image_size=16,
                           **options)
    assert len(dataset) == 2
    sample = dataset[1]
    assert sample["label"] == 7 and np.asarray(sample["frames"]).shape == (4, 16, 16, 3)
    # TSN centre-of-segment sampling of 20 frames into 4: frames 3, 8, 13, 18 (pixel value 10 k)
    assert [int(np.asarray(frame)[0, 0, 0]) for frame in sample["frames"]] == [30, 80, 130, 180]


def test_missing_frame_empty_video_and_unknown_class(tmp_path):
    root = _fixture(tmp_path)
    (root / "videos" / "v1" / "image_00013.jpg").unlink()
    dataset = load_dataset("activitynet", "train", root=root, kind="video", num_frames=4, image_size=16)
    with pytest.raises(DatasetError, match="image_00013.jpg' is missing"):
        dataset[0]
    (root / "train.txt").write_text("videos/v1 5 4 3\n")
    with pytest.raises(DatasetError, match="is empty"):
        load_dataset("activitynet", "train", root=root, kind="video")
    (root / "train.txt").write_text("videos/v1 1 20 250\n")
    with pytest.raises(DatasetError, match=r"class id\(s\) \[250\] outside the 200 classes"):
        load_dataset("activitynet", "train", root=root, kind="video")


def test_video_files_through_pyav(tmp_path):
    pytest.importorskip("av")
    from effhub.data.video.decode import read_video_file, write_video_file

    frames = generate_clips(1, seed=0)["frames"][0]
    path = write_video_file(tmp_path / "clip.mp4", frames)
    decoded = read_video_file(path)
    assert decoded.shape == frames.shape
    # lossy MPEG-4 with 4:2:0 chroma on noisy frames: about 16 grey levels off on average; unrelated frames ~50
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 25
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.mp4").write_bytes(b"not a video at all" * 10)
    for name in ("empty.mp4", "garbage.mp4", "missing.mp4"):
        with pytest.raises(DatasetError):
            read_video_file(tmp_path / name)
