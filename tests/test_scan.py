"""scan: folders -> ImageRef, recursively, without hanging, special files as errors."""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from imgsim_index.errors import InputError
from imgsim_index.ingest.scan import ImageRef, is_image_name, scan_folder, scan_folders

needs_posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types")


def _touch(path: Path, data: bytes = b"not really an image") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _scan(root: Path, timeout: float = 10.0) -> list[ImageRef]:
    """scan_folders in a watchdog thread: a hang fails the test instead of blocking the run."""
    out: list[list[ImageRef]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            out.append(scan_folders([str(root)]))
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"scan of {root} did not finish in {timeout} s"
    if errors:
        raise errors[0]
    return out[0]


def _by_name(refs: list[ImageRef]) -> dict[str, ImageRef]:
    names = Counter(os.path.basename(r.path) for r in refs)
    dupes = [n for n, c in names.items() if c > 1]
    assert not dupes, f"listed more than once: {dupes}"
    return {os.path.basename(r.path): r for r in refs}


def test_recursive_any_case_extensions_and_non_images_ignored(tmp_path: Path) -> None:
    images = [
        "a.JPG", "b.Jpeg", "c.jpeg", "e.PNG", "f.gif", "g.BMP", "h.tif", "i.TIFF", "j.webp",
        "sub/k.WebP", "sub/deeper/l.tiff", "sub/deeper/deepest/m.jpg",
    ]  # a hidden ".x.jpg" is skipped by default: see test_filters.py
    others = ["notes.txt", "README", "x.jpg.bak", "sub/data.json", "sub/deeper/jpg", "archive.zip"]
    for name in images + others:
        _touch(tmp_path / name)
    refs = _scan(tmp_path)
    got = _by_name(refs)
    assert set(got) == {os.path.basename(n) for n in images}
    for name in images:
        ref = got[os.path.basename(name)]
        assert ref.error is None
        assert ref.path == str(tmp_path / name)
        assert os.path.isabs(ref.path)
        assert ref.root == str(tmp_path)
        st = os.stat(tmp_path / name)
        assert (ref.size, ref.mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_is_image_name() -> None:
    for name in ("x.jpg", "x.JPG", "x.Jpeg", "x.png", "x.BMP", "x.gif", "x.tif", "x.TIFF",
                 "x.webp", "a.b.c.WEBP", "with space.jpeg"):
        assert is_image_name(name), name
    for name in ("x.txt", "x", "x.jpg.bak", "jpg", "x.jpgx", "x.pdf"):
        assert not is_image_name(name), name


def test_order_is_stable_and_sorted(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.jpg", "c.png", "z/y.jpg", "z/x.jpg", "m/n.jpg"):
        _touch(tmp_path / name)
    first = [r.path for r in _scan(tmp_path)]
    assert first == [r.path for r in _scan(tmp_path)]
    top = [p for p in first if os.path.dirname(p) == str(tmp_path)]
    assert top == sorted(top)
    assert len(first) == 6


def test_relative_root_gives_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    _touch(tmp_path / "photos" / "a.jpg")
    monkeypatch.chdir(tmp_path)
    (ref,) = scan_folders(["photos"])
    assert ref.path == str(tmp_path / "photos" / "a.jpg")
    assert ref.root == str(tmp_path / "photos")


@needs_posix
def test_fifo_named_jpg_is_an_error_not_a_hang(tmp_path: Path) -> None:
    _touch(tmp_path / "ok.jpg")
    os.mkfifo(tmp_path / "x.jpg")
    got = _by_name(_scan(tmp_path, timeout=5))
    assert got["ok.jpg"].error is None
    ref = got["x.jpg"]
    assert ref.error is not None and "named pipe" in ref.error
    assert ref.size is None and ref.mtime_ns is None


@needs_posix
def test_broken_symlink(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone.jpg", tmp_path / "broken.jpg")
    (ref,) = _scan(tmp_path)
    assert ref.path == str(tmp_path / "broken.jpg")
    assert ref.error is not None and "broken symlink" in ref.error


@needs_posix
def test_symlink_to_an_image_is_followed(tmp_path: Path) -> None:
    data = b"x" * 1234
    _touch(tmp_path / "elsewhere" / "real.bin", data)
    (tmp_path / "root").mkdir()
    os.symlink(tmp_path / "elsewhere" / "real.bin", tmp_path / "root" / "alias.jpg")
    (ref,) = _scan(tmp_path / "root")
    assert ref.error is None
    assert ref.path == str(tmp_path / "root" / "alias.jpg")  # the name the user knows
    assert ref.size == len(data)


@needs_posix
def test_symlink_folder_loop_terminates_and_lists_files_once(tmp_path: Path) -> None:
    a = tmp_path / "a"
    _touch(a / "one.jpg")
    _touch(a / "inner" / "two.png")
    os.symlink(a, a / "loop")  # a/loop -> a
    os.symlink("..", a / "inner" / "up")  # a/inner/up -> a
    os.symlink(a / "inner", a / "alias")  # a second name for a folder already listed
    refs = _scan(a, timeout=5)
    got = _by_name(refs)
    assert set(got) == {"one.jpg", "two.png"}
    assert all(r.error is None for r in refs)


@needs_posix
def test_symlink_file_loop_is_an_error(tmp_path: Path) -> None:
    os.symlink(tmp_path / "y.jpg", tmp_path / "x.jpg")
    os.symlink(tmp_path / "x.jpg", tmp_path / "y.jpg")
    os.symlink(tmp_path / "self.jpg", tmp_path / "self.jpg")
    got = _by_name(_scan(tmp_path, timeout=5))
    assert set(got) == {"x.jpg", "y.jpg", "self.jpg"}
    for ref in got.values():
        assert ref.error is not None and ref.error  # e.g. "cannot stat: Too many levels ..."
        assert ref.size is None


def test_directory_named_like_an_image_is_recursed_into(tmp_path: Path) -> None:
    _touch(tmp_path / "d.jpg" / "inner.png")
    _touch(tmp_path / "e.PNG" / "f.tif" / "g.gif")
    got = _by_name(_scan(tmp_path))
    assert set(got) == {"inner.png", "g.gif"}
    assert got["inner.png"].path == str(tmp_path / "d.jpg" / "inner.png")
    assert all(r.error is None for r in got.values())


def test_unicode_and_odd_file_names(tmp_path: Path) -> None:
    names = [
        "фото 1.jpg", "日本語の写真.png", "emoji 😀.webp", "name with  spaces .jpeg",
        "quote'\"s.bmp", "ümlaut-Ä.GIF", "#hash%percent&amp.tif", "-leading-dash.jpg",
        "tab\tname.png",
    ]
    try:
        _touch(tmp_path / "probe" / "new\nline.jpg").unlink()
        names.append("new\nline.jpg")
    except OSError:
        pass  # the file system refuses newlines in names
    for name in names:
        _touch(tmp_path / "sub dir ñ" / name)
    got = _by_name(_scan(tmp_path))
    assert set(got) == set(names)
    for name in names:
        assert got[name].error is None
        assert got[name].path == str(tmp_path / "sub dir ñ" / name)
        assert got[name].size == len(b"not really an image")


@needs_posix
def test_name_that_is_not_utf8_is_listed(tmp_path: Path) -> None:
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9.jpg"  # Latin-1 bytes, invalid UTF-8
    try:
        with open(raw, "wb") as fh:
            fh.write(b"x")
    except OSError:
        pytest.skip("the file system refuses names that are not UTF-8")
    _touch(tmp_path / "fine.jpg")
    refs = _scan(tmp_path)
    assert len(refs) == 2
    bad = [r for r in refs if not r.path.endswith("fine.jpg")]
    assert len(bad) == 1
    ref = bad[0]
    assert ref.error is None and os.fsencode(ref.path) == raw  # the exact bytes


def test_missing_root_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a folder"):
        scan_folders([str(tmp_path / "nope")])


def test_a_file_given_as_a_root_is_scanned_alone(tmp_path: Path) -> None:
    _touch(tmp_path / "file.jpg")
    refs = scan_folders([str(tmp_path / "file.jpg")])
    assert [(r.path, r.root) for r in refs] == [(str(tmp_path / "file.jpg"), str(tmp_path))]


def test_empty_folder(tmp_path: Path) -> None:
    assert scan_folders([str(tmp_path)]) == []
    assert list(scan_folder(str(tmp_path))) == []


def test_overlapping_roots_list_a_file_once_under_the_first(tmp_path: Path) -> None:
    _touch(tmp_path / "top.jpg")
    _touch(tmp_path / "sub" / "inner.jpg")
    refs = scan_folders([str(tmp_path / "sub"), str(tmp_path)])
    assert sorted(os.path.basename(r.path) for r in refs) == ["inner.jpg", "top.jpg"]
    inner = next(r for r in refs if r.path.endswith("inner.jpg"))
    assert inner.root == str(tmp_path / "sub")
