"""Video files through PyAV (the `video` extra: `pip install effhub[video]`): read the frames of an mp4 (or any
container FFmpeg reads) as a uint8 array, and write one (tests, demos)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import DatasetError, MissingDependencyError


def _av():
    try:
        import av
    except ImportError as error:
        raise MissingDependencyError("reading video files needs PyAV, which is not installed",
                                     "pip install 'effhub[video]' (or pip install av)") from error
    return av


def read_video_file(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """All frames (or the first `max_frames`) of a video file as uint8 `(T, H, W, 3)` RGB.

    Raises:
        DatasetError: the file is missing, cannot be decoded, or holds no video frame.
    """
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"video file '{path}' does not exist", "pass the path of an existing video file")
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetError(f"'{path}' holds no video stream", "pass a file with a video track")
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except DatasetError:
        raise
    except Exception as error:  # PyAV raises its own error types (InvalidDataError, ...) for unreadable files
        raise DatasetError(f"video file '{path}' cannot be decoded ({type(error).__name__}: {error})",
                           "re-encode the video (e.g. to H.264 or MPEG-4 in an mp4 container)") from None
    if not frames:
        raise DatasetError(f"video file '{path}' has no decodable frame", "pass a video with at least one frame")
    return np.stack(frames)


def write_video_file(path: str | os.PathLike, frames, fps: int = 8, codec: str = "mpeg4") -> Path:
    """Write uint8 frames `(T, H, W, 3)` to a video file (MPEG-4 part 2 by default, in every FFmpeg build)."""
    av = _av()
    path = Path(path)
    frames = np.asarray(frames, dtype=np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "1"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


__all__ = ["read_video_file", "write_video_file"]
