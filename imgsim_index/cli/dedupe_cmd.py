"""The dedupe command: pairs, groups and a report, after an optional index update."""

from __future__ import annotations

import datetime
import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import click

from imgsim_index.cli.options import (
    DEFAULT_INDEX,
    ByteSize,
    build_options,
    build_settings,
    candidate_threshold_option,
    engine_options,
    engine_session,
    index_option,
    keep_options,
    output_option,
    quiet_option,
    scan_options,
    scan_settings,
    verify_options,
)
from imgsim_index.cli.progress import TqdmProgress

if TYPE_CHECKING:
    from imgsim_index.report.contract import Report


@click.command()
@click.argument("folders", nargs=-1, type=click.Path())
@index_option
@candidate_threshold_option
@verify_options
@click.option("--compare-mode", type=click.Choice(["full", "sample"]), default="full",
              show_default=True, help="full: every image; sample: a random share as queries.")
@click.option("--sample-ratio", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.3,
              show_default=True, help="Share of images used as queries in sample mode.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the sample and the collage's choice of pairs.")
@click.option("--compare-scope", type=click.Choice(["all", "inter-folder", "inter_folder"]),
              default="all", show_default=True,
              help="inter-folder: only pairs across input folders (inter_folder, the old "
                   "spelling, is the same; report.json keeps writing inter_folder).")
@click.option("--max-pairs-for-collage", type=click.IntRange(0, 10000), default=20,
              show_default=True, help="Pairs shown in the collage image.")
@output_option
@click.option("--new-only", is_flag=True,
              help="Only pairs involving images added since the last dedupe of this index.")
@click.option("--since", type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
                                              "%Y-%m-%d"]), default=None,
              help="Only pairs involving images added at or after this local time.")
@click.option("--exact/--approx", "exact", default=None,
              help="Pair search. exact: every pair is scored. approx: candidates from "
                   "k-means cells, scored exactly; much faster on large indexes, may miss "
                   "a few pairs (see benchmarks). Default: approx above 200,000 images, "
                   "through the index's on-disk IVF (memory set by --memory-budget).")
@click.option("--nprobe", type=click.IntRange(1, 100_000), default=None,
              help="Approx only: cells each image is compared with. More finds more pairs, "
                   "slower. Default by threshold: 24 at 0.9, 12 at 0.95, 8 at 0.99 in "
                   "memory; 8 at 0.9, 4 at 0.95, 3 at 0.97 with the on-disk IVF (at most 16).")
@click.option("--memory-budget", type=ByteSize(), default=None, metavar="SIZE",
              help="Memory a dedupe of a large index (on-disk IVF) stays about within, "
                   "e.g. 2G or 512M; more keeps more lists decoded (faster). Default: a "
                   "tenth of this machine's memory, between 512M and 4G. Verification "
                   "holds the images it has described up to half of it (default 512M).")
@keep_options
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON summary (counts, paths of the report files) on stdout "
                   "instead of the text summary; progress stays on stderr.")
@build_options
@scan_options
@quiet_option
@engine_options
def dedupe(folders: tuple[str, ...], index_dir: str, threshold: float | None, verify: str,
           group_near_misses: bool, verify_workers: int | None, max_other_shots: int,
           compare_mode: str,
           sample_ratio: float, seed: int, compare_scope: str, max_pairs_for_collage: int,
           output: str, new_only: bool, since: datetime.datetime | None, exact: bool | None,
           nprobe: int | None, memory_budget: int | None, keep: str,
           protect: tuple[str, ...], as_json: bool, model: str | None,
           weights: str | None, device: str, backend: str, batch_size: int,
           workers: int | None, video_fps: float, checkpoint_every: int, wait: bool,
           include_hidden: bool, exclude: tuple[str, ...], min_size: int, min_pixels: int,
           quiet: bool, engine: str, ray_address: str | None) -> None:
    """Find similar pairs and duplicate groups; update the index from FOLDERS (folders, image
    or video files) first if given, and look only at them then.

    The options of the embedding model and the scan filters apply to that update only."""
    from imgsim_index.pipeline.dedupe import DedupeSettings
    from imgsim_index.pipeline.dedupe import dedupe as run_dedupe
    from imgsim_index.search import ApproxSettings, PairSettings
    from imgsim_index.verify import VerifySettings

    settings = DedupeSettings(
        threshold=threshold,
        verify=VerifySettings(enabled=None if verify == "auto" else verify == "on",
                              # a command runs nothing else while it verifies
                              workers=verify_workers, fork=True,
                              other_shots_per_image=max_other_shots),
        group_near_misses=group_near_misses,
        pairs=PairSettings(compare_mode=compare_mode, sample_ratio=sample_ratio, seed=seed,
                           compare_scope=compare_scope.replace("-", "_")),  # the seed's value
        output=output,
        max_pairs_for_collage=max_pairs_for_collage,
        build=build_settings(model=model, weights=weights, device=device, backend=backend,
                             batch_size=batch_size, workers=workers, video_fps=video_fps,
                             checkpoint_every=checkpoint_every, wait=wait,
                             scan=scan_settings(include_hidden=include_hidden, exclude=exclude,
                                                min_size=min_size, min_pixels=min_pixels)),
        keep=keep,
        protect=protect,
        new_only=new_only,
        since=since.timestamp() if since is not None else None,
        search="auto" if exact is None else "exact" if exact else "approx",
        approx=ApproxSettings(nprobe=nprobe),
        memory_budget=memory_budget,
        wait=wait,
    )
    with engine_session(engine, ray_address) as eng:
        r = run_dedupe(index_dir, list(folders) or None, settings, TqdmProgress(not quiet),
                       engine=eng)
    if as_json:
        click.echo(json.dumps(summary(r), indent=2, ensure_ascii=False))
    else:
        _print_summary(r, index_dir)


def summary(r: Any) -> dict[str, Any]:
    """What `--json` prints: the report's counts and where its files are."""
    rep = r.report
    keys = ("total_images_in_folders", "threshold", "number_of_similar_pairs",
            "number_of_unique_groups", "number_of_duplicate_groups", "photos_to_remove",
            "files_removable", "bytes_removable", "number_of_near_misses", "number_of_errors")
    return {**{k: rep.get(k) for k in keys},
            "skipped": (rep.get("skipped") or {}).get("counts", {}),
            "report_path": r.report_path, "collage_path": r.collage_path,
            "gallery_path": r.gallery_path, "output_dir": r.output_dir,
            "index_path": rep.get("index_path"),
            "index_created": bool(r.build is not None and r.build.created)}


def index_line(r: Any, index_dir: str) -> str:
    """Where the index is, and whether this run created it (naming --index when the
    default folder was taken)."""
    path = r.report.get("index_path") or index_dir
    if r.build is None or not r.build.created:
        return f"Index: {path}"
    how = "" if index_dir != DEFAULT_INDEX else " (the default; choose another with --index DIR)"
    return f"Index: created {path}{how}"


def _print_summary(r: Any, index_dir: str) -> None:
    """The text summary, all on stdout (progress bars are on stderr): the seed's eight
    lines first, in their order, then what later versions added."""
    from imgsim_index.report.json_report import verification_text

    rep = r.report
    click.echo(f"Total images found: {rep['total_images_in_folders']}")
    click.echo(f"Threshold = {rep['threshold']}")
    click.echo(f"Found {rep['number_of_similar_pairs']} pairs of images that meet the "
               "similarity threshold.")
    click.echo(f"Number of unique groups: {rep['number_of_unique_groups']}")
    click.echo("Photos that can be removed if only keeping 1 from each group: "
               f"{rep['photos_to_remove']}")
    click.echo(f"Collage saved: {r.collage_path}")
    click.echo(f"Result JSON: {r.report_path}")
    click.echo(f"Done. Output folder: {r.output_dir}")
    click.echo(index_line(r, index_dir))
    if rep["verification"]["ran"]:
        click.echo(f"Verified: {verification_text(rep)}")
    click.echo(removable_line(rep))
    if why := kept_line(rep):
        click.echo(why)
    if rep["number_of_errors"]:
        click.echo(f"{rep['number_of_errors']} unreadable files were skipped "
                   f"(listed under \"errors\" in {r.report_path})")
    click.echo(f"Gallery saved: {r.gallery_path}")


def removable_line(rep: Report) -> str:
    """What apply would act on, apart from the seed's count of images beyond one per group:
    protected files, video frames and keepers are never removed."""
    from imgsim_index.report.units import human_bytes

    return (f"Files apply would remove (keepers, --protect folders and video frames kept): "
            f"{rep['files_removable']}, {human_bytes(int(rep['bytes_removable']))}")


def kept_line(rep: Report) -> str:
    """Why apply would remove fewer files than the seed's count of photos beyond one per
    group, when it would ("" otherwise): the non-keepers it leaves, by reason."""
    total, gap = rep["photos_to_remove"], rep["photos_to_remove"] - rep["files_removable"]
    roles = Counter(m["role"] for g in rep.get("groups", []) for m in g["members"])
    parts = [f"{n} {one if n == 1 else many}" for n, one, many in (
        (roles["frame"], "is a video frame, and apply never removes a video for its frames",
         "are video frames, and apply never removes a video for its frames"),
        (roles["protected"], "is in a --protect folder", "are in --protect folders"),
        (roles["unverified"], "is not a verified copy of its keeper (report.json says why "
         "under not_removable)", "are not verified copies of their keepers (report.json "
         "says why under not_removable)")) if n]
    if gap <= 0 or not parts:
        return ""
    lead = ("Apply removes none" if gap == total else f"Apply leaves {gap}")
    return f"{lead} of the {total} photos beyond one per group: {'; '.join(parts)}."


COMMANDS = (dedupe,)
