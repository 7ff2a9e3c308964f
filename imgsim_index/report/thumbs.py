"""thumbs: indexed entries (image files, video frames) -> small JPEGs in a folder, for the gallery.

Thumbnails are named by position (t000001.jpg, ...), never by the source file's
name, so an untrusted file name never reaches a URL or the file system here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from imgsim_index.defaults import thumbnail_workers
from imgsim_index.progress import NoProgress, Progress
from imgsim_index.report.preview import preview_image

THUMB_BOX = (240, 180)
THUMB_QUALITY = 72


def make_thumbnail(src: str, dst: str, box: tuple[int, int] = THUMB_BOX) -> bool:
    """Write a JPEG thumbnail of `src` to `dst`; False if `src` cannot be shown."""
    try:
        preview_image(src, box).save(dst, "JPEG", quality=THUMB_QUALITY)
        return True
    except Exception:  # a file that changed or broke since indexing: the gallery shows text
        return False


def write_thumbnails(
    paths: Sequence[str], folder: str, progress: Progress | None = None, workers: int | None = None,
) -> dict[str, str]:
    """Thumbnail each distinct path into `folder`. Returns path -> file name inside `folder`
    for the thumbnails that could be made."""
    progress = progress or NoProgress()
    unique = list(dict.fromkeys(paths))
    os.makedirs(folder, exist_ok=True)
    names = [f"t{k:06d}.jpg" for k in range(1, len(unique) + 1)]
    progress.start("thumbnails", len(unique))
    done: dict[str, str] = {}
    # PIL and OpenCV release the GIL while decoding and encoding, so threads scale here
    with ThreadPoolExecutor(max_workers=workers or thumbnail_workers()) as pool:
        jobs = pool.map(lambda t: make_thumbnail(t[0], os.path.join(folder, t[1])),
                        zip(unique, names, strict=True))
        for src, name, ok in zip(unique, names, jobs, strict=True):
            if ok:
                done[src] = name
            progress.update(1)
    progress.finish()
    return done
