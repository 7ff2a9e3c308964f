"""The command line: parse options, call the library, print, map errors to one line."""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

import click

from imgsim_index.cli.engine_options import engine_options, engine_session
from imgsim_index.embed.models import MODEL_NAMES
from imgsim_index.errors import ImgsimError, ModelError

DEFAULT_INDEX = "imgsim-index"


class TqdmProgress:
    """Progress bars on stderr, so stdout carries only the summary."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar: Any = None

    def start(self, description: str, total: int | None) -> None:
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, unit="img", file=sys.stderr,
                            dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def note(self, message: str) -> None:
        if self.enabled:
            click.echo(message, err=True)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def index_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--index", "index_dir", default=DEFAULT_INDEX, show_default=True,
                        type=click.Path(file_okay=False),
                        help="Index folder (catalog.sqlite, vectors.faiss, manifest.json).")(f)


def embed_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--model", type=click.Choice(MODEL_NAMES), default=None,
                     help="Backbone. Default: the index's model, or resnet50 for a new index."),
        click.option("--weights", type=click.Path(dir_okay=False), default=None,
                     help="Local state_dict file for the model (offline use)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                     show_default=True),
        click.option("--backend", type=click.Choice(["torch", "onnx", "auto"]), default="auto",
                     show_default=True,
                     help="Inference engine: torch, or ONNX Runtime on the CPU (about 2x "
                          "faster; pip install 'imgsim-index[onnx]'); auto: onnx when "
                          "installed and on the CPU. Same vectors either way."),
        click.option("--batch-size", type=click.IntRange(1, 4096), default=32,
                     show_default=True),
        click.option("--workers", type=click.IntRange(0, 64), default=None,
                     help="Decoding processes (default: cores - 1, at least 1)."),
        click.option("--video-fps", type=click.FloatRange(0.0, 1000.0, min_open=True),
                     default=1.0, show_default=True,
                     help="Frames sampled per second of video (each frame is an entry)."),
        click.option("--checkpoint-every", type=click.IntRange(1), default=2048,
                     show_default=True, hidden=True,
                     help="Commit after this many images (or 30 s, whichever comes first)."),
        click.option("--wait", is_flag=True, help="Wait for another writer instead of failing."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _build_settings(model: str | None, weights: str | None, device: str, batch_size: int,
                    workers: int | None, wait: bool, video_fps: float = 1.0,
                    checkpoint_every: int = 2048, prune: bool = False, backend: str = "auto",
                    **_: Any) -> Any:
    """BuildSettings from embed_options' values (passed as keyword arguments)."""
    from imgsim_index.embed.embedder import EmbedSettings
    from imgsim_index.pipeline.build import BuildSettings

    return BuildSettings(model=model, weights=weights, wait_for_lock=wait, video_fps=video_fps,
                         checkpoint_images=checkpoint_every, prune=prune,
                         embed=EmbedSettings(batch_size=batch_size, workers=workers,
                                             device=device, backend=backend))


def _print_build(r: Any) -> None:
    pruned = f", forgot {r.pruned} missing" if r.pruned else ""
    click.echo(f"Scanned {r.scanned} files: embedded {r.embedded}, unchanged {r.unchanged}, "
               f"unreadable {r.errors}{pruned}.")
    click.echo(f"Index {r.index} ({r.model}): {r.total_embedded} images, "
               f"{r.total_errors} unreadable files.")


def keep_options(f: Callable[..., Any]) -> Callable[..., Any]:
    from imgsim_index.groups.keep import DEFAULT_KEEP, KEEP_POLICIES

    f = click.option("--protect", multiple=True, type=click.Path(exists=True, file_okay=False),
                     help="Files under this folder are always kept (repeatable).")(f)
    return click.option("--keep", type=click.Choice(KEEP_POLICIES), default=DEFAULT_KEEP,
                        show_default=True,
                        help="Which file of each group to keep; the others are removable.")(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imgsim-index")
def cli() -> None:
    """Find duplicate and near-duplicate images with CNN embeddings and a FAISS index."""


def _index_paths(paths: tuple[str, ...], index_dir: str, quiet: bool, engine: str = "local",
                 ray_address: str | None = None, **embed: Any) -> None:
    from imgsim_index.pipeline.build import build_index

    with engine_session(engine, ray_address) as eng:
        r = build_index(list(paths), index_dir, _build_settings(**embed),
                        TqdmProgress(not quiet), engine=eng.file_embedder if eng else None)
    _print_build(r)


prune_option = click.option(
    "--prune", is_flag=True,
    help="Forget indexed files under these folders that no longer exist.")


@cli.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@index_option
@prune_option
@embed_options
@engine_options
def build(folders: tuple[str, ...], index_dir: str, quiet: bool, **embed: Any) -> None:
    """Scan FOLDERS for images and videos; embed the new or changed ones into the index."""
    _index_paths(folders, index_dir, quiet, **embed)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@index_option
@prune_option
@embed_options
@engine_options
def add(paths: tuple[str, ...], index_dir: str, quiet: bool, **embed: Any) -> None:
    """Add image and video files or folders to the index (only new or changed ones).

    Adding k files costs time in proportion to k, not to the size of the index.
    """
    _index_paths(paths, index_dir, quiet, **embed)


@cli.command()
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False))
@index_option
@click.option("--threshold", type=click.FloatRange(-1.0, 1.0), default=0.99, show_default=True,
              help="Cosine similarity at or above which two images are a pair.")
@click.option("--compare-mode", type=click.Choice(["full", "sample"]), default="full",
              show_default=True, help="full: every image; sample: a random share as queries.")
@click.option("--sample-ratio", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.3,
              show_default=True, help="Share of images used as queries in sample mode.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the sample and the collage's choice of pairs.")
@click.option("--compare-scope", type=click.Choice(["all", "inter_folder"]), default="all",
              show_default=True, help="inter_folder: only pairs across input folders.")
@click.option("--max-pairs-for-collage", type=click.IntRange(0, 10000), default=20,
              show_default=True)
@click.option("--output", default="results", show_default=True,
              type=click.Path(file_okay=False), help="Results go to OUTPUT/<timestamp>/.")
@click.option("--new-only", is_flag=True,
              help="Only pairs involving images added since the last dedupe of this index.")
@click.option("--since", type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
                                              "%Y-%m-%d"]), default=None,
              help="Only pairs involving images added at or after this local time.")
@click.option("--exact/--approx", "exact", default=None,
              help="Pair search. exact: every pair is scored. approx: candidates from "
                   "k-means cells, scored exactly; much faster on large indexes, may miss "
                   "a few pairs (see benchmarks). Default: approx above 200,000 images.")
@click.option("--nprobe", type=click.IntRange(1, 100_000), default=None,
              help="Approx only: cells each image is compared with. More finds more pairs, "
                   "slower. Default by threshold: 24 at 0.9, 12 at 0.95, 8 at 0.99.")
@keep_options
@embed_options
@engine_options
def dedupe(folders: tuple[str, ...], index_dir: str, threshold: float, compare_mode: str,
           sample_ratio: float, seed: int, compare_scope: str, max_pairs_for_collage: int,
           output: str, new_only: bool, since: Any, exact: bool | None, nprobe: int | None,
           keep: str,
           protect: tuple[str, ...], quiet: bool, **embed: Any) -> None:
    """Find similar pairs and duplicate groups; update the index from FOLDERS first if given."""
    from imgsim_index.pipeline.dedupe import DedupeSettings
    from imgsim_index.pipeline.dedupe import dedupe as run_dedupe
    from imgsim_index.search.approx import ApproxSettings
    from imgsim_index.search.exact import PairSettings

    engine, ray_address = embed.pop("engine"), embed.pop("ray_address")
    if engine == "ray" and exact is None:
        exact = True  # the cluster's job is the exact search
    settings = DedupeSettings(
        pairs=PairSettings(threshold=threshold, compare_mode=compare_mode,
                           sample_ratio=sample_ratio, seed=seed, compare_scope=compare_scope),
        output=output,
        max_pairs_for_collage=max_pairs_for_collage,
        build=_build_settings(**embed),
        keep=keep,
        protect=protect,
        new_only=new_only,
        since=since.timestamp() if since is not None else None,
        search="auto" if exact is None else "exact" if exact else "approx",
        approx=ApproxSettings(nprobe=nprobe),
    )
    with engine_session(engine, ray_address) as eng:
        settings = dataclasses.replace(settings, engine=eng)
        r = run_dedupe(index_dir, list(folders) or None, settings, TqdmProgress(not quiet))
    rep = r.report
    if rep["number_of_errors"]:
        click.echo(f"{rep['number_of_errors']} unreadable files were skipped "
                   f"(listed under \"errors\" in {r.report_path})", err=True)
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
    click.echo(f"Gallery saved: {r.gallery_path}", err=True)



@cli.command("import-vectors")
@click.argument("vectors", type=click.Path(dir_okay=False))
@click.argument("paths", type=click.Path(dir_okay=False))
@index_option
@click.option("--model", default=None,
              help="Label of the model that made the vectors (checked against the index). "
                   "Default: the index's, or \"imported\" for a new index.")
@click.option("--compact/--no-compact", default=None,
              help="Rewrite the index's vectors into one file afterwards (streamed, in "
                   "chunks). Default: when the index needs it (over 16 segment files, or more "
                   "vectors in segments than in the compacted file).")
@click.option("--chunk-mb", type=click.IntRange(1, 1 << 20), default=64, show_default=True,
              help="Vectors read, normalised and written per step: memory stays about 3x "
                   "this, whatever the number of vectors.")
@click.option("--wait", is_flag=True, help="Wait for another writer instead of failing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
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


def _shown(path: str) -> str:
    """A path as one printable line: file names are untrusted and may hold control characters."""
    return path if path.isprintable() else ascii(path)


def _bytes(n: int) -> str:
    from imgsim_index.report.html import human_bytes

    return f"{human_bytes(n)} ({n} bytes)"


def _chosen_action(move_to: str | None, hardlink: bool, delete: bool) -> str | None:
    chosen = [name for name, on in (("move", move_to is not None), ("hardlink", hardlink),
                                    ("delete", delete)) if on]
    if len(chosen) > 1:
        raise click.UsageError("choose one of --move-to DIR, --hardlink, --delete")
    return chosen[0] if chosen else None


def _apply_summary(action: str, n: int, freed: int, held: int, dest: str | None) -> str:
    if action == "move":
        return f"move {n} files into {dest}, freeing {_bytes(freed)} in the input folders"
    if action == "delete":
        return f"delete {n} files, freeing {_bytes(freed)}"
    text = f"replace {n} files with hard links to their keepers, freeing {_bytes(freed)}"
    if held:
        text += f" now and {_bytes(held)} once the originals kept for undo are deleted"
    return text


@cli.command()
@click.argument("report", type=click.Path(exists=True, dir_okay=False))
@click.option("--move-to", type=click.Path(file_okay=False), default=None,
              help="Move removable files under DIR/<input folder name>/, keeping sub-folders.")
@click.option("--hardlink", is_flag=True,
              help="Replace each removable file with a hard link to its keeper (same filesystem).")
@click.option("--delete", is_flag=True, help="Delete removable files (cannot be undone).")
@click.option("--yes", is_flag=True, help="Act. Without it, only show what would be done.")
@click.option("--journal", type=click.Path(dir_okay=False), default=None,
              help="Undo journal to write (default: apply-<action>-<time>.jsonl beside REPORT).")
@click.option("--resume", "resume_journal", default=None,
              type=click.Path(exists=True, dir_okay=False),
              help="Finish an apply that was interrupted, from its journal (needs --yes).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def apply(report: str, move_to: str | None, hardlink: bool, delete: bool, yes: bool,
          journal: str | None, resume_journal: str | None, quiet: bool) -> None:
    """Move, hard-link or delete the removable files of REPORT (a dry run unless --yes).

    Keepers and protected files are never touched; a file that changed since the
    report, or that lies outside the report's input folders, is refused.
    """
    from imgsim_index.actions.plan import apply_plan, default_journal_path, make_plan, resume_apply

    action = _chosen_action(move_to, hardlink, delete)
    if resume_journal:
        if not yes:
            raise click.UsageError("--resume acts on files; add --yes")
        result = resume_apply(resume_journal, report, TqdmProgress(not quiet))
        _print_refusals(result.refused)
    else:
        if action is None:
            raise click.UsageError("choose what to do: --move-to DIR, --hardlink or --delete")
        plan = make_plan(report, action, move_to)
        _print_refusals(plan.refused)
        if not yes:
            _print_dry_run(plan)
            return
        journal = journal or default_journal_path(report, action)
        click.echo(f"Journal: {journal}", err=True)
        try:
            result = apply_plan(plan, journal, TqdmProgress(not quiet))
        except KeyboardInterrupt:
            j = shlex.quote(journal)
            click.echo(f"Interrupted. Finish with: imgsim-index apply {shlex.quote(report)} "
                       f"--resume {j} --yes   or take it back with: imgsim-index undo {j}",
                       err=True)
            raise
        _print_refusals(result.refused[len(plan.refused):])  # refused at the last moment
    _print_applied(result)
    for f in result.failed:
        click.echo(f"failed {_shown(f.path)}: {f.reason}")
    if result.failed:
        click.echo(f"{len(result.failed)} files failed and were left as they were; "
                   "see the journal", err=True)
        sys.exit(1)


def _print_refusals(refused: list[Any]) -> None:
    for r in refused:
        click.echo(f"refused {_shown(r.path)}: {r.reason}")


def _print_dry_run(plan: Any) -> None:
    for op in plan.operations:
        target = f" -> {_shown(op.target)}" if op.target else f" (keeper {_shown(op.keeper)})"
        click.echo(f"would {plan.action} {_shown(op.path)}{target}")
    text = _apply_summary(plan.action, len(plan.operations), plan.bytes_freed, plan.bytes_held,
                          plan.move_to)
    click.echo(f"Dry run: would {text}; {len(plan.refused)} refused. "
               "Run again with --yes to do it.")


def _print_applied(result: Any) -> None:
    text = _apply_summary(result.action, len(result.done), result.bytes_freed, result.bytes_held,
                          result.move_to)
    click.echo(f"Done: {text}; {len(result.refused)} refused.")
    if result.already_done:
        click.echo(f"{result.already_done} files had been done before the interruption.")
    if result.bytes_held:
        click.echo(f"Originals kept for undo: {result.backup_dir} "
                   "(delete it to free their space once undo is no longer needed)")
    click.echo(f"Undo with: imgsim-index undo {shlex.quote(result.journal)}")


@cli.command()
@click.argument("journal", type=click.Path(exists=True, dir_okay=False))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def undo(journal: str, quiet: bool) -> None:
    """Put back the files that an apply moved or hard-linked, from its JOURNAL."""
    from imgsim_index.actions.undo import undo as run_undo

    result = run_undo(journal, TqdmProgress(not quiet))
    for r in result.not_restored:
        click.echo(f"not restored {_shown(r.path)}: {r.reason}")
    if result.deleted:
        click.echo(f"{len(result.deleted)} deleted files cannot be restored.")
    click.echo(f"Restored {len(result.restored)} files; {len(result.not_restored)} not restored.")
    if result.not_restored:
        sys.exit(1)


@cli.command()
@click.argument("report", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["csv"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="File to write (default: REPORT with the format's extension; - for stdout).")
def export(report: str, fmt: str, output: str | None) -> None:
    """Write REPORT's groups as a table, one row per file, for spreadsheets."""
    from imgsim_index.actions.safety import load_report
    from imgsim_index.report.export import write_export

    data = load_report(report)
    if output == "-":
        write_export(data, sys.stdout, fmt)
        return
    path = output or os.path.splitext(report)[0] + "." + fmt
    with open(path, "w", newline="", encoding="utf-8") as fh:
        rows = write_export(data, fh, fmt)
    click.echo(f"{fmt.upper()} saved: {path} ({rows} files)")


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="imgsim-index", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `imgsim-index`: show help
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.UsageError as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except ImgsimError as exc:
        # a download attempt may have left a partial line on stderr
        text = str(exc).replace("run verify with repair", "run `imgsim-index verify --repair`")
        click.echo(f"{chr(10) if isinstance(exc, ModelError) else ''}Error: {text}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted: work committed so far is kept; run again to resume.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


from imgsim_index.cli import index_commands  # noqa: E402,F401  (registers query, verify, watch)
