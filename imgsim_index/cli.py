"""The command line: parse options, call the library, print, map errors to one line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from .errors import ImgsimError, ModelError
from .models import MODEL_NAMES

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
        click.option("--batch-size", type=click.IntRange(1, 4096), default=32,
                     show_default=True),
        click.option("--workers", type=click.IntRange(0, 64), default=None,
                     help="Decoding processes (default: cores - 1, at least 1)."),
        click.option("--wait", is_flag=True, help="Wait for another writer instead of failing."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _build_settings(model: str | None, weights: str | None, device: str, batch_size: int,
                    workers: int | None, wait: bool) -> Any:
    from .embed import EmbedSettings
    from .indexer import BuildSettings

    return BuildSettings(model=model, weights=weights, wait_for_lock=wait,
                         embed=EmbedSettings(batch_size=batch_size, workers=workers,
                                             device=device))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imgsim-index")
def cli() -> None:
    """Find duplicate and near-duplicate images with CNN embeddings and a FAISS index."""


@cli.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False))
@index_option
@embed_options
def build(folders: tuple[str, ...], index_dir: str, model: str | None, weights: str | None,
          device: str, batch_size: int, workers: int | None, wait: bool, quiet: bool) -> None:
    """Scan FOLDERS for images and embed the new or changed ones into the index."""
    from .indexer import build_index

    settings = _build_settings(model, weights, device, batch_size, workers, wait)
    r = build_index(list(folders), index_dir, settings, TqdmProgress(not quiet))
    click.echo(f"Scanned {r.scanned} files: embedded {r.embedded}, unchanged {r.unchanged}, "
               f"unreadable {r.errors}.")
    click.echo(f"Index {r.index} ({r.model}): {r.total_embedded} images, "
               f"{r.total_errors} unreadable files.")


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
@embed_options
def dedupe(folders: tuple[str, ...], index_dir: str, threshold: float, compare_mode: str,
           sample_ratio: float, seed: int, compare_scope: str, max_pairs_for_collage: int,
           output: str, model: str | None, weights: str | None, device: str, batch_size: int,
           workers: int | None, wait: bool, quiet: bool) -> None:
    """Find similar pairs and duplicate groups; update the index from FOLDERS first if given."""
    from .dedupe import DedupeSettings
    from .dedupe import dedupe as run_dedupe
    from .pairs import PairSettings

    settings = DedupeSettings(
        pairs=PairSettings(threshold=threshold, compare_mode=compare_mode,
                           sample_ratio=sample_ratio, seed=seed, compare_scope=compare_scope),
        output=output,
        max_pairs_for_collage=max_pairs_for_collage,
        build=_build_settings(model, weights, device, batch_size, workers, wait),
    )
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
        click.echo(f"{chr(10) if isinstance(exc, ModelError) else ''}Error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted: work committed so far is kept; run again to resume.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
