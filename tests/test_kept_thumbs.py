"""ingest/kept: the verification thumbnails `dedupe FOLDER`'s build keeps are the very
pixels verification decodes, and verification takes them instead of the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsim_index.embed.models.efficientnet import EFFICIENTNET_LITE0
from imgsim_index.errors import DecodeError
from imgsim_index.ingest import kept
from imgsim_index.ingest.decode import decode_file
from imgsim_index.ingest.identity import content_digest
from imgsim_index.ingest.upright import upright_image
from imgsim_index.verify.inputs import decode_for_verify

PRE = EFFICIENTNET_LITE0.preprocess
BOX = (512, 512)


def picture(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.dstack([x * 255 // w, y * 255 // h, (x // 37 + y // 23) % 2 * 200]).astype(np.uint8)
    rgb[: h // 6, : w // 5] = rng.integers(0, 256, 3)
    return rgb


def write_files(folder: Path) -> list[Path]:
    """JPEGs at the sizes where the build's DCT scale and verification's agree and where they
    may not, one turned by EXIF, PNGs with transparency and in 16-bit grey, and a GIF."""
    out = []
    for name, (w, h) in {"big": (2400, 1600), "odd": (1100, 1300), "small": (640, 480),
                         "wide": (4000, 900), "tall": (700, 2600)}.items():
        p = folder / f"{name}.jpg"
        Image.fromarray(picture(w, h)).save(p, quality=90)
        out.append(p)
    exif = Image.Exif()
    exif[0x0112] = 6
    p = folder / "turned.jpg"
    Image.fromarray(picture(1800, 1200, 1)).save(p, quality=90, exif=exif)
    out.append(p)
    rgba = np.dstack([picture(900, 600, 2), np.tile(np.arange(900) % 256, (600, 1))])
    Image.fromarray(rgba.astype(np.uint8), "RGBA").save(folder / "alpha.png")
    grey = (np.arange(700 * 500).reshape(500, 700) * 97 % 65536).astype(np.uint16)
    Image.fromarray(grey).save(folder / "grey16.png")
    Image.fromarray(picture(300, 200, 3)).convert("P").save(folder / "palette.gif")
    return [*out, folder / "alpha.png", folder / "grey16.png", folder / "palette.gif"]


def test_kept_thumbnails_are_the_pixels_verification_decodes(tmp_path: Path) -> None:
    files = write_files(tmp_path)
    with kept.keeping(BOX, 1 << 30):
        for p in files:
            decode_file(str(p), PRE)
        taken = {p.name: kept.take(str(p), content_digest(p.read_bytes()), BOX) for p in files}
    assert taken["palette.gif"] is None  # another format: verification decodes it
    assert sum(t is not None for t in taken.values()) >= len(files) - 2
    for p in files:
        thumb = taken[p.name]
        if thumb is None:
            continue
        im = upright_image(str(p), BOX, "verify")
        w, h = im.info["upright_size"]
        assert thumb[1] == (h, w), p.name
        assert np.array_equal(thumb[0], np.asarray(im.convert("RGB"), np.uint8)), p.name


def test_verification_takes_a_kept_thumbnail_once_and_only_for_its_content(
        tmp_path: Path) -> None:
    p = write_files(tmp_path)[0]
    digest = content_digest(p.read_bytes())
    with kept.keeping(BOX, 1 << 30):
        decode_file(str(p), PRE)
        assert kept.take(str(p), "another content", BOX) is None
        rgb, shape = decode_for_verify(str(p), 512, digest)
        assert rgb.shape[2] == 3 and max(rgb.shape[:2]) == 512 and shape == (1600, 2400)
        assert kept.take(str(p), digest, BOX) is None  # given once: now read from the file


def test_a_file_replaced_or_deleted_after_the_build_is_read_again(tmp_path: Path) -> None:
    """A kept thumbnail stands for the file only while it is the file that was read: one
    replaced since (another picture under the same name, same size and mtime) or deleted
    is decoded (or found missing) by verification, as if nothing had been kept: a
    keeper deleted mid-run is no evidence of a copy."""
    import os

    a, b = write_files(tmp_path)[:2]
    digests = {q: content_digest(q.read_bytes()) for q in (a, b)}
    with kept.keeping(BOX, 1 << 30):
        for q in (a, b):
            decode_file(str(q), PRE)
        st = a.stat()
        other = tmp_path / "other.jpg"
        Image.fromarray(picture(2400, 1600, 9)).save(other, quality=90)
        os.replace(other, a)  # another picture under a's name
        os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert kept.take(str(a), digests[a], BOX) is None
        rgb, _ = decode_for_verify(str(a), 512, digests[a])  # the file as it is now
        now = np.asarray(upright_image(str(a), BOX, "verify").convert("RGB"), np.uint8)
        assert np.array_equal(rgb, now)
        b.unlink()
        with pytest.raises(DecodeError, match="vanished|No such file"):
            decode_for_verify(str(b), 512, digests[b])


def test_thumbnails_of_files_in_no_candidate_pair_are_dropped(tmp_path: Path) -> None:
    files = write_files(tmp_path)[:3]
    digests = [content_digest(p.read_bytes()) for p in files]
    with kept.keeping(BOX, 1 << 30):
        for p in files:
            decode_file(str(p), PRE)
        kept.retain({str(files[0])})
        got = [kept.take(str(p), d, BOX) for p, d in zip(files, digests, strict=True)]
    assert got[0] is not None and got[1] is None and got[2] is None


def test_nothing_is_kept_outside_the_block_or_beyond_its_bytes(tmp_path: Path) -> None:
    files = write_files(tmp_path)[:3]
    digests = [content_digest(p.read_bytes()) for p in files]
    decode_file(str(files[0]), PRE)
    with kept.keeping(BOX, 1):  # room for none
        for p in files:
            decode_file(str(p), PRE)
        assert all(kept.take(str(p), d, BOX) is None for p, d in zip(files, digests, strict=True))
    with kept.keeping(BOX, 1 << 30):
        pass
    assert kept.take(str(files[0]), digests[0], BOX) is None


def test_blocks_that_end_out_of_order_leave_none_open() -> None:
    """Two dedupes overlapping in one process (library use from two threads): whichever
    ends first, nothing is kept once both have ended."""
    first, second = kept.keeping(BOX, 1 << 30), kept.keeping(BOX, 1 << 30)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert kept.wanted_box() == BOX  # the second is still open
    second.__exit__(None, None, None)
    assert kept.wanted_box() is None


@pytest.mark.parametrize("workers", [None, 0, 1, 2])
def test_the_build_keeps_thumbnails_for_verification_with_any_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int | None) -> None:
    """Images are described in this process whatever compares them (threads or worker
    processes): the build keeps its thumbnails for verification in every case."""
    import imgsim_index.pipeline.dedupe as dd
    from tests.conftest import cli_ok

    opened: list[tuple[int, int]] = []
    real = kept.keeping

    def spy(box: tuple[int, int], max_bytes: int):  # type: ignore[no-untyped-def]
        opened.append(box)
        return real(box, max_bytes)

    monkeypatch.setattr(dd.kept, "keeping", spy)
    (tmp_path / "photos").mkdir()
    write_files(tmp_path / "photos")
    args = ["dedupe", str(tmp_path / "photos"), "--index", str(tmp_path / "idx"), "--output",
            str(tmp_path / "out"), "--model", "efficientnet-lite0", "-q"]
    cli_ok(*args, *([] if workers is None else ["--verify-workers", str(workers)]))
    assert opened == [(512, 512)]
