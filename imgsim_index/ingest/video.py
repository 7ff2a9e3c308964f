"""video: a video file -> frames sampled at a fixed rate, each an entry `file.mp4#t=HH:MM:SS.mmm`.

Frames are decoded with OpenCV (what it can read, it indexes) and go through the
same preprocessing as still images (resize, centre crop), so a frame and a
photo of the same scene compare like two photos.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imgsim_index.errors import DecodeError
from imgsim_index.ingest.decode import Preprocess, resize_and_crop

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
     ".3gp", ".mjpeg"}
)
_FRAME = re.compile(r"^(?P<video>.+)#t=(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d+)?)$")


@dataclass(frozen=True)
class Frame:
    ms: int  # position in the video, milliseconds
    pixels: np.ndarray  # preprocessed (crop, crop, 3) uint8
    width: int
    height: int


def is_video_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def frame_path(video: str, ms: int) -> str:
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    return f"{video}#t={h:02d}:{m:02d}:{rest / 1000:06.3f}"


def split_frame_path(path: str) -> tuple[str, int | None]:
    """`cam.mp4#t=00:01:23.500` -> (`cam.mp4`, 83500); a plain path -> (path, None)."""
    m = _FRAME.match(path)
    if not m or not is_video_name(m["video"]):
        return path, None
    ms = (int(m["h"]) * 3600 + int(m["m"]) * 60) * 1000 + round(float(m["s"]) * 1000)
    return m["video"], ms


def _open(path: str):  # type: ignore[no-untyped-def]
    import cv2

    if not os.path.isfile(path):
        raise DecodeError("video file vanished" if not os.path.exists(path) else
                          "not a regular file")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise DecodeError("OpenCV cannot open this video")
    return cap


def iter_frames(path: str, every_s: float, pre: Preprocess) -> Iterator[Frame]:
    """Frames at t = 0, every_s, 2*every_s, ... (the first frame at or after each time)."""
    import cv2

    cap = _open(path)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
        if not fps or not math.isfinite(fps) or fps <= 0 or fps > 1000:
            fps = 0.0
        k, next_ms, got = 0, 0.0, 0
        while cap.grab():
            ms = k * 1000.0 / fps if fps else cap.get(cv2.CAP_PROP_POS_MSEC)
            k += 1
            if ms + 1e-6 < next_ms:
                continue
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                continue
            next_ms += every_s * 1000.0
            while next_ms <= ms:  # a gap in the stream: do not emit a burst
                next_ms += every_s * 1000.0
            h, w = bgr.shape[:2]
            rgb = Image.fromarray(bgr[:, :, ::-1].copy())
            got += 1
            yield Frame(round(ms), resize_and_crop(rgb, pre), w, h)
        if got == 0:
            raise DecodeError("no decodable frames")
    finally:
        cap.release()


def read_frame(path: str) -> Image.Image:
    """The frame an entry names, as an RGB image (for collages and galleries)."""
    import cv2

    video, ms = split_frame_path(path)
    if ms is None:
        raise DecodeError(f"not a video frame entry: {path}")
    cap = _open(video)
    try:
        cap.set(cv2.CAP_PROP_POS_MSEC, float(ms))
        ok, bgr = cap.read()
        if not ok or bgr is None:
            raise DecodeError(f"cannot read the frame at {ms} ms")
        return Image.fromarray(bgr[:, :, ::-1].copy())
    finally:
        cap.release()
