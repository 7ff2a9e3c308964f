"""Commands for a long-lived index: query, verify, watch."""

from __future__ import annotations

import atexit
import gc
import json
import os
import signal
import sys
import threading
from typing import Any

import click

from imgsim_index.cli.options import (
    build_options,
    build_settings,
    candidate_threshold_option,
    embed_options,
    index_option,
    output_option,
    quiet_option,
    scan_options,
    scan_settings,
    wait_option,
)
from imgsim_index.cli.progress import TqdmProgress


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@index_option
@click.option("--top-k", type=click.IntRange(1, 10000), default=10, show_default=True,
              help="Matches shown per image.")
@click.option("--threshold", type=click.FloatRange(-1.0, 1.0), default=None,
              help="Only matches at or above this similarity (default: the model's candidate "
                   "threshold, as dedupe uses).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--include-self", is_flag=True,
              help="Also list the query file itself when it is in the index.")
@click.option("--include-below", is_flag=True,
              help="Fill up to --top-k with neighbours under the threshold, marked "
                   "below_threshold.")
@click.option("--verify", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="Pair verification. on: each match is compared on its pixels and gets a "
                   "verdict (exact, copy or other shot) with its evidence, as in dedupe. "
                   "(The verify command checks the index instead.)")
@embed_options
def query(images: tuple[str, ...], index_dir: str, top_k: int, threshold: float | None,
          as_json: bool, include_self: bool, include_below: bool, verify: str,
          model: str | None, weights: str | None, device: str, backend: str, batch_size: int,
          workers: int | None) -> None:
    """Show the indexed images matching each of IMAGES, with scores and verdicts.

    Exits 1 when a query image cannot be read (the others are still answered)."""
    _idle_blas_threads_sleep()
    _skip_last_collection()
    from imgsim_index.pipeline.query import query_index
    from imgsim_index.verify import VerifySettings

    for image in images:  # before loading any model
        if not os.path.isfile(image):
            why = "is not a file" if os.path.exists(image) else "does not exist"
            raise click.ClickException(f"query image {image} {why}")
    settings = build_settings(model=model, weights=weights, device=device, backend=backend,
                              batch_size=batch_size, workers=workers)
    results = query_index(index_dir, list(images), top_k, threshold, settings,
                          verify=VerifySettings(enabled=verify == "on"),
                          include_self=include_self, include_below=include_below)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2, ensure_ascii=False))
        _exit_if_unreadable(results)
        return
    for r in results:
        click.echo(f"{r.path}")
        if r.error:
            click.echo(f"  unreadable: {r.error}")
        elif not r.matches:
            click.echo(f"  no matches at or above {r.threshold:g}")
        for row in r.rows():
            click.echo(f"  {row['similarity_score']:.6f}  {row['path']}")
            # on a line of its own: the score lines keep their form
            click.echo(f"{'':12}{row['match']}: {row['evidence']}")
    _exit_if_unreadable(results)


# OpenBLAS's worker threads (numpy's matrix products) spin for about 2**28 cycles after
# they start and after each product before they sleep: on 2 cores that spin took about
# 0.05 s of CPU from the import of numpy alone, and 0.1 s from a query on 100,000 vectors.
# 2**4 cycles (the least OpenBLAS takes) keeps the threads for large products.
BLAS_THREAD_TIMEOUT = "4"


def _idle_blas_threads_sleep() -> None:
    """Let OpenBLAS's idle threads sleep at once, unless the caller chose otherwise; it
    reads the setting when numpy loads it, so this counts only before numpy is imported."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", BLAS_THREAD_TIMEOUT)


def _skip_last_collection() -> None:
    """At the interpreter's exit, freeze the objects alive then, so that its last garbage
    collection does not walk them all (numpy's, ONNX Runtime's, the library's): about
    0.03 s of CPU at the end of a one-image query. Only objects caught in reference cycles
    are then left to the operating system; nothing else changes (the command has closed
    its index and printed its output, and the other exit handlers still run)."""
    atexit.unregister(gc.freeze)  # once, however often the command runs in a process
    atexit.register(gc.freeze)


def _exit_if_unreadable(results: list[Any]) -> None:
    bad = [r for r in results if r.error]
    if bad:
        click.echo(f"Error: query image {bad[0].path} cannot be read: {bad[0].error}"
                   + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""), err=True)
        sys.exit(1)


# One command, two names: `verify` (its first name, kept for users' scripts) and `check`
# (the API's Index.check). It checks the index; --verify (dedupe, query) verifies pairs.
_CHECK_HELP = """Check the index's integrity: catalog, vectors and manifest against each other.

`check` and `verify` are the same command (Index.check() in the Python API). It checks
the index, not images: the --verify option of dedupe and query is pair verification."""


@click.command(help=_CHECK_HELP,
               short_help="Check the index's integrity (also named check).")
@index_option
@click.option("--repair", is_flag=True,
              help="Delete orphan files, drop rows without a sound vector, compact.")
@wait_option
def verify(index_dir: str, repair: bool, wait: bool) -> None:
    from imgsim_index.index.check import verify_index

    r = verify_index(index_dir, repair=repair, wait=wait)
    click.echo(f"{r.embedded} embedded images, {r.errors} unreadable files, "
               f"{r.segments} vector files, {r.superseded_vectors} superseded vectors "
               "awaiting compaction.")
    for note in r.notes:
        click.echo(f"note: {note}")
    for problem in r.problems:
        click.echo(f"problem: {problem}")
    for fix in r.repaired:
        click.echo(f"repaired: {fix}")
    for left in r.unrepairable:
        click.echo(f"cannot repair: {left}")
    if r.unrepairable:
        raise SystemExit(1)
    if r.problems and not repair:
        click.echo("Run `imgsim-index verify --repair` to fix these.")
        raise SystemExit(1)
    if not r.problems:
        click.echo("OK: the index is consistent.")


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@index_option
@click.option("--interval", type=click.FloatRange(0.1), default=10.0, show_default=True,
              help="Seconds between scans.")
@click.option("--settle", type=click.FloatRange(0.0), default=None,
              help="Seconds a file must stay unmodified before it is taken (default: interval).")
@candidate_threshold_option
@click.option("--log", "log_path", type=click.Path(dir_okay=False), default=None,
              help="JSON Lines log of findings (default: INDEX/watch.jsonl).")
@output_option
@click.option("--max-cycles", type=click.IntRange(1), default=None, hidden=True,
              help="Stop after this many scans.")
@build_options
@scan_options
@quiet_option
def watch(folder: str, index_dir: str, interval: float, settle: float | None,
          threshold: float | None,
          log_path: str | None, output: str, max_cycles: int | None, model: str | None,
          weights: str | None, device: str, backend: str, batch_size: int,
          workers: int | None, video_fps: float, checkpoint_every: int, wait: bool,
          include_hidden: bool, exclude: tuple[str, ...], min_size: int, min_pixels: int,
          quiet: bool) -> None:
    """Keep adding new files and footage from FOLDER, logging new duplicates as they appear.

    Stops cleanly on Ctrl-C or SIGTERM, after committing the batch in progress.
    """
    from imgsim_index.pipeline.dedupe import DedupeSettings
    from imgsim_index.pipeline.watch import WatchSettings, watch_folder

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        click.echo(f"{signal.Signals(signum).name}: stopping after the current batch", err=True)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    settings = WatchSettings(
        interval=interval, settle=settle, log=log_path, max_cycles=max_cycles,
        build=build_settings(model=model, weights=weights, device=device, backend=backend,
                             batch_size=batch_size, workers=workers, video_fps=video_fps,
                             checkpoint_every=checkpoint_every, wait=wait,
                             scan=scan_settings(include_hidden=include_hidden, exclude=exclude,
                                                min_size=min_size, min_pixels=min_pixels)),
        dedupe=DedupeSettings(threshold=threshold, output=output,
                              max_pairs_for_collage=20),
    )

    def on_cycle(event: dict[str, Any]) -> None:
        if event["added"] or event["unreadable"]:
            n = len(event.get("pairs", []))
            click.echo(f"{event['time']}: added {event['added']}, unreadable "
                       f"{event['unreadable']}, new pairs {n}")

    watch_folder(folder, index_dir, settings, stop, on_cycle, TqdmProgress(not quiet))
    click.echo("Stopped.")


check = click.Command("check", callback=verify.callback, params=verify.params,
                      help=_CHECK_HELP,
                      short_help="Check the index's integrity (also named verify).")

COMMANDS = (query, verify, check, watch)
