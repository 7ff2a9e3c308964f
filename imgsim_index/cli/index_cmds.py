"""Commands that write into the index: build and add (one implementation), import-vectors."""

from __future__ import annotations

from typing import Any

import click

from imgsim_index.cli.options import (
    build_options,
    build_settings,
    engine_options,
    engine_session,
    index_option,
    prune_option,
    quiet_option,
    scan_options,
    scan_settings,
    skipped_line,
    wait_option,
)
from imgsim_index.cli.progress import TqdmProgress


def _index_command(name: str, metavar: str, doc: str) -> click.Command:
    """build and add: the same command under two names, each with its own help."""

    @click.command(name, help=doc)
    @click.argument("paths", metavar=metavar, nargs=-1, required=True, type=click.Path())
    @index_option
    @prune_option
    @build_options
    @scan_options
    @quiet_option
    @engine_options
    def index_paths(paths: tuple[str, ...], index_dir: str, prune: bool, model: str | None,
                    weights: str | None, device: str, backend: str, batch_size: int,
                    workers: int | None, video_fps: float, checkpoint_every: int, wait: bool,
                    include_hidden: bool, exclude: tuple[str, ...], min_size: int,
                    min_pixels: int, quiet: bool, engine: str, ray_address: str | None) -> None:
        from imgsim_index.pipeline.build import build_index

        scan = scan_settings(include_hidden=include_hidden, exclude=exclude,
                             min_size=min_size, min_pixels=min_pixels)
        settings = build_settings(model=model, weights=weights, device=device, backend=backend,
                                  batch_size=batch_size, workers=workers, video_fps=video_fps,
                                  checkpoint_every=checkpoint_every, wait=wait, prune=prune,
                                  scan=scan)
        with engine_session(engine, ray_address) as eng:
            r = build_index(list(paths), index_dir, settings, TqdmProgress(not quiet),
                            engine=eng)
        moved = f", moved {r.moved} (vectors kept)" if r.moved else ""
        pruned = f", forgot {r.pruned} missing" if r.pruned else ""
        click.echo(f"Scanned {r.scanned} file{'s' if r.scanned != 1 else ''}: embedded "
                   f"{embedded_text(r)}, unchanged "
                   f"{r.unchanged}{moved}, unreadable {r.errors}{pruned}.")
        if r.skipped:
            click.echo(skipped_line(r.skipped))
        click.echo(f"Index {r.index} ({r.model}): {r.total_embedded} images, "
                   f"{r.total_errors} unreadable files.")

    return index_paths


build = _index_command(
    "build", "FOLDERS...",
    "Scan FOLDERS for images and videos; embed the new or changed ones into the index.")

add = _index_command(
    "add", "PATHS...",
    "Add image and video files or folders to the index (only new or changed ones).\n\n"
    "Adding k files costs time in proportion to k, not to the size of the index.")


@click.command("import-vectors")
@click.argument("vectors", type=click.Path(dir_okay=False))
@click.argument("paths", type=click.Path(dir_okay=False))
@index_option
@click.option("--model", default=None,
              help="Label of the model that made the vectors (checked against the index). "
                   "Default: the index's, or \"imported\" for a new index.")
@click.option("--compact/--no-compact", default=None,
              help="Rewrite the index's vectors into one file afterwards (streamed, in "
                   "chunks). Default: when the segment files hold more vectors than the "
                   "compacted file; past 16 segment files the 8 smallest are merged into one "
                   "instead (the cost follows what was added).")
@click.option("--chunk-mb", type=click.IntRange(1, 1 << 20), default=64, show_default=True,
              help="Vectors read, normalised and written per step: memory stays about 3x "
                   "this, whatever the number of vectors.")
@wait_option
@quiet_option
def import_vectors(vectors: str, paths: str, index_dir: str, model: str | None,
                   compact: bool | None, chunk_mb: int, wait: bool, quiet: bool) -> None:
    """Add precomputed vectors (a float .npy, one row per image) with their PATHS (a UTF-8
    file, one path per line, line k for row k). Vectors are normalised on the way in; the
    index can then be deduped like any other, but `build` will not add to it."""
    from imgsim_index.index.import_vectors import ImportSettings
    from imgsim_index.index.import_vectors import import_vectors as run_import

    settings = ImportSettings(model=model, compact=compact, chunk_bytes=chunk_mb << 20,
                              wait_for_lock=wait)
    r = run_import(vectors, paths, index_dir, settings, TqdmProgress(not quiet))
    click.echo(f"Imported {r.imported} vectors of dimension {r.dim} (model {r.model}).")
    click.echo(f"Index {r.index}: {r.total_embedded} images.")


COMMANDS = (build, add, import_vectors)


def embedded_text(r: Any) -> str:
    """What a build embedded, files and video frames apart: "3", "2 images and 30 frames
    of 1 video"."""
    images = r.embedded - r.embedded_frames
    if not r.embedded_frames:
        return str(images)
    n = r.embedded_videos  # videos whose frames are all in (0: one stopped part way)
    frames = f"{r.embedded_frames} video frame{'s' if r.embedded_frames != 1 else ''}" + (
        f" of {n} video{'s' if n != 1 else ''}" if n else "")
    return f"{images} image{'s' if images != 1 else ''} and {frames}" if images else frames
