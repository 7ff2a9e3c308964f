"""Videos: frames sampled at --video-fps become entries `clip.avi#t=HH:MM:SS.mmm`."""

from __future__ import annotations

from pathlib import Path

from conftest import cli_ok, report_of, write_scene_video

from imgsim_index.ingest.video import frame_path, split_frame_path
from imgsim_index.report.preview import preview_image


def test_frame_names_round_trip() -> None:
    p = frame_path("/cam/cam1.mp4", 83_500)
    assert p == "/cam/cam1.mp4#t=00:01:23.500"
    assert split_frame_path(p) == ("/cam/cam1.mp4", 83_500)
    assert split_frame_path("/a/b.jpg") == ("/a/b.jpg", None)
    assert split_frame_path("/a/b.jpg#t=00:00:01.000") == ("/a/b.jpg#t=00:00:01.000", None)


def test_build_counts_files_and_video_frames_apart(tmp_path: Path) -> None:
    from PIL import Image

    clips = tmp_path / "mixed"
    clips.mkdir()
    write_scene_video(clips / "cam1.avi", scenes=1, seconds_each=3)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(clips / "still.jpg")
    out = cli_ok("build", clips, "--index", tmp_path / "idx", "--model", "efficientnet-lite0",
                 "-q")
    assert "Scanned 2 files: embedded 1 image and 3 video frames of 1 video, unchanged 0," in out


def test_static_scenes_give_one_group_each(tmp_path: Path) -> None:
    clips = tmp_path / "cctv"
    clips.mkdir()
    write_scene_video(clips / "cam1.avi", scenes=3, seconds_each=4)
    idx = tmp_path / "idx"
    out = cli_ok("build", clips, "--index", idx, "--model", "efficientnet-lite0", "-q")
    assert "Scanned 1 file: embedded 12 video frames of 1 video," in out  # 12 s at 1 frame/s
    printed = cli_ok("dedupe", "--index", idx, "--threshold", "0.99", "--output", tmp_path / "r",
                     "-q")
    rep = report_of(printed)
    assert rep["total_images_in_folders"] == 12
    assert rep["number_of_unique_groups"] == 3 and rep["photos_to_remove"] == 9
    # the seed's count and what apply would remove differ; the console says why
    assert "Files apply would remove (keepers, --protect folders and video frames kept): 0," \
        in printed
    assert ("Apply removes none of the 9 photos beyond one per group: 9 are video frames, "
            "and apply never removes a video for its frames.") in printed
    for group in rep["groups"]:
        members = [m if isinstance(m, str) else m["path"] for m in group["members"]]
        seconds = sorted(split_frame_path(m)[1] // 1000 for m in members)  # type: ignore[operator]
        assert len(seconds) == 4 and seconds[-1] - seconds[0] == 3
        assert seconds[0] % 4 == 0  # all four frames of one scene, none of another
    pair = rep["similar_pairs"][0]
    assert pair["image1"].startswith(str(clips / "cam1.avi#t=00:00:"))
    im = preview_image(pair["image1"], (320, 240))
    assert im.size == (320, 240)
    # a second build finds the video complete; a higher rate re-samples nothing old
    assert "embedded 0," in cli_ok("build", clips, "--index", idx, "-q")


def test_unreadable_video_is_an_error(tmp_path: Path) -> None:
    clips = tmp_path / "cctv"
    clips.mkdir()
    (clips / "broken.mp4").write_bytes(b"\x00" * 1000)
    idx = tmp_path / "idx"
    out = cli_ok("build", clips, "--index", idx, "--model", "efficientnet-lite0", "-q")
    assert "unreadable 1" in out
    rep = report_of(cli_ok("dedupe", "--index", idx, "--output", tmp_path / "r", "-q"))
    assert rep["errors"][0]["path"] == str(clips / "broken.mp4")
    assert rep["errors"][0]["error"] == "OpenCV cannot open this video"


def test_cctv_clip_groups_each_quiet_stretch(tmp_path: Path) -> None:
    """The README's CCTV workflow: quiet stretches (lit differently) are separate groups."""
    from conftest import _load_script

    clip = _load_script("make_cctv_clip")
    folder = tmp_path / "cctv"
    folder.mkdir()
    quiet = clip.write_clip(str(folder / "cam1.avi"), seconds=40, seed=0)
    idx = tmp_path / "idx"
    cli_ok("build", folder, "--index", idx, "--model", "efficientnet-lite0", "-q")
    rep = report_of(cli_ok("dedupe", "--index", idx, "--threshold", "0.99",
                           "--output", tmp_path / "r", "-q"))
    stretch_of = {s: k for k, (a, b) in enumerate(quiet) for s in range(a, b + 1)}
    seen = set()
    for group in rep["groups"]:
        secs = [split_frame_path(m if isinstance(m, str) else m["path"])[1] // 1000
                for m in group["members"]]  # type: ignore[operator]
        stretches = {stretch_of[s] for s in secs if s in stretch_of}
        assert len(stretches) <= 1, f"a group mixes quiet stretches: {secs}"
        seen |= stretches
    assert seen == set(range(len(quiet)))  # every quiet stretch was found
