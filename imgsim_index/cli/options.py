"""Every option shared by two or more commands, defined once, and the typed builders that
turn parsed values into the library's settings.

A command lists exactly the options it uses in its signature and passes them by name to a
builder; builders take keyword-only parameters and nothing else, so an option a command
does not declare cannot reach the library, and one it declares but drops is a test failure
(tests/test_cli.py checks every command's parameters against its body).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from imgsim_index.defaults import (
    CANDIDATE_THRESHOLDS,
    DEFAULT_KEEP,
    DEFAULT_THRESHOLD,
    MAX_EMBED_WORKERS,
    MAX_VERIFY_THREADS,
    VERIFY_OTHER_SHOTS_PER_IMAGE,
)

if TYPE_CHECKING:
    from imgsim_index.embed.embedder import EmbedSettings
    from imgsim_index.ingest.scan import ScanSettings
    from imgsim_index.pipeline.build import BuildSettings
    from imgsim_index.pipeline.ray_engine import RayEngine

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_INDEX = "imgsim-index"
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class ByteSize(click.ParamType):
    """A size such as 512M, 2G, 1.5GiB or 1000000 (bytes), as an int of bytes."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
        unit = text[-1:] if text[-1:] in _UNITS else ""
        try:
            size = int(float(text[:len(text) - len(unit)]) * _UNITS[unit])
        except ValueError:
            self.fail(f"{value!r} is not a size (e.g. 512M, 2G)", param, ctx)
        if size < 64 << 20:
            self.fail(f"{value!r} is below the smallest budget, 64M", param, ctx)
        return size


class LazyChoice(click.Choice[str]):
    """A Choice whose values come from a library module, imported only when a command's
    help or value needs them (the modules import numpy; `imgsim-index --help` should not)."""

    def __init__(self, load: Callable[[], Sequence[str]]):
        self._load = load
        self._choices: tuple[str, ...] | None = None
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        if self._choices is None:
            self._choices = tuple(self._load())
        return self._choices

    @choices.setter
    def choices(self, values: Sequence[str]) -> None:
        self._choices = tuple(values)


def _model_names() -> Sequence[str]:
    from imgsim_index.embed.models import MODEL_NAMES

    return MODEL_NAMES


def _keep_policies() -> Sequence[str]:
    from imgsim_index.groups.keep import KEEP_POLICIES

    return KEEP_POLICIES


def _stack(*options: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator applying `options` in the order written (first one listed first)."""

    def apply(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


index_option = click.option(
    "--index", "index_dir", default=DEFAULT_INDEX, show_default=True,
    type=click.Path(file_okay=False),
    help="Index folder (catalog.sqlite, vectors.faiss, manifest.json).")

quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")

wait_option = click.option("--wait", is_flag=True,
                           help="Wait for another writer instead of failing.")

prune_option = click.option(
    "--prune", is_flag=True,
    help="Forget indexed files under these folders that no longer exist.")

# dedupe's candidate threshold: the model's own unless given (defaults.CANDIDATE_THRESHOLDS)
candidate_threshold_option = click.option(
    "--threshold", type=click.FloatRange(-1.0, 1.0), default=None,
    help="Cosine similarity at or above which two images are a candidate pair (6 decimals). "
         "Default: the model's own (efficientnet-lite0 "
         f"{CANDIDATE_THRESHOLDS['efficientnet-lite0']} with verification, resnet50 "
         f"{CANDIDATE_THRESHOLDS['resnet50']}; {DEFAULT_THRESHOLD} with --verify off).")

verify_options = _stack(
    click.option("--verify", "verify", type=click.Choice(["auto", "on", "off"]),
                 default="auto", show_default=True,
                 help="Pair verification. on: check each candidate pair on its pixels (exact, "
                      "edited copy or another shot); other shots go to near_misses. off: "
                      "cosine only. auto: on, except for an index of imported vectors. (The "
                      "verify command checks the index instead.)"),
    click.option("--group-near-misses", is_flag=True,
                 help="Put other-shot pairs (bursts, a moved subject) back into the groups."),
    click.option("--verify-workers", type=click.IntRange(0, 256), default=None,
                 help="Verification worker processes for rounds of 16 comparisons or more "
                      "(default: on Linux, forks of this command, one per core, at most "
                      f"{MAX_VERIFY_THREADS}, that inherit the decoded images; elsewhere "
                      "threads; 0: one thread). Where the platform cannot fork, processes "
                      "are sent the images: they pay where comparisons are slow and cost "
                      "time where they are quick."),
    click.option("--max-other-shots", type=click.IntRange(0, 1_000_000),
                 default=VERIFY_OTHER_SHOTS_PER_IMAGE, show_default=True,
                 help="Compare an image with at most this many images that turn out to be "
                      "other shots; its candidate pairs left then are listed as not verified "
                      "(never removed). A limit for pictures the model cannot tell apart "
                      "(products on white, scans), where nearly every pair is a candidate. "
                      "Pairs the perceptual hashes found are compared whatever it. 0: no "
                      "limit."),
)

output_option = click.option(
    "--output", default="results", show_default=True, type=click.Path(file_okay=False),
    help="Reports go to OUTPUT/<timestamp>/.")

# What embedding an image needs: the model and where it runs (serve takes these one by one).
model_option = click.option(
    "--model", type=LazyChoice(_model_names), default=None,
    help="Backbone. Default: the index's model, or resnet50 for a new index.")
weights_option = click.option(
    "--weights", type=click.Path(dir_okay=False), default=None,
    help="Local state_dict file for the model (offline use).")
device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
    show_default=True, help="Where the network runs.")
backend_option = click.option(
    "--backend", type=click.Choice(["torch", "onnx", "auto"]), default="auto",
    show_default=True,
    help="Inference engine: torch, or ONNX Runtime on the CPU (about 2x "
         "faster; pip install 'imgsim-index[onnx]'); auto: onnx when "
         "installed and on the CPU. Same vectors either way.")
batch_size_option = click.option(
    "--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True,
    help="Images per forward pass.")
embed_options = _stack(
    model_option, weights_option, device_option, backend_option, batch_size_option,
    click.option("--workers", type=click.IntRange(0, 64), default=None,
                 help="Decoding threads (ONNX backend) or processes (torch) (default: "
                      f"cores - 1, at least 1, at most {MAX_EMBED_WORKERS})."),
)

# What writing files into the index needs on top: video sampling, checkpoints, the lock.
build_options = _stack(
    embed_options,
    click.option("--video-fps", type=click.FloatRange(0.0, 1000.0, min_open=True),
                 default=1.0, show_default=True,
                 help="Frames sampled per second of video (each frame is an entry)."),
    click.option("--checkpoint-every", type=click.IntRange(1), default=2048,
                 show_default=True, hidden=True,
                 help="Commit after this many images (or 30 s, whichever comes first)."),
    wait_option,
)

# Which files under the inputs are taken (each one left out is counted with its reason).
scan_options = _stack(
    click.option("--include-hidden", is_flag=True,
                 help="Also index hidden files and folders (names starting with '.', "
                      "@eaDir, Thumbs.db, desktop.ini); they are skipped by default."),
    click.option("--exclude", multiple=True, metavar="PATTERN",
                 help="Skip files and folders matching this gitignore-style pattern, "
                      "relative to each input folder (repeatable; e.g. 'cache/', "
                      "'*.tmp.jpg', '/scans/old/')."),
    click.option("--min-size", type=click.IntRange(0), default=0, metavar="BYTES",
                 help="Skip files smaller than this many bytes."),
    click.option("--min-pixels", type=click.IntRange(0), default=0, metavar="N",
                 help="Skip images with fewer pixels than this (width x height, read from "
                      "the file header)."),
)

keep_options = _stack(
    click.option("--keep", type=LazyChoice(_keep_policies), default=DEFAULT_KEEP,
                 show_default=True,
                 help="Which file of each group to keep; the others are removable. "
                      "original: a file with camera EXIF, then the original format (JPEG, "
                      "HEIC, RAW over PNG/TIFF conversions), the earliest capture time, the "
                      "most pixels, the shorter path."),
    click.option("--protect", multiple=True, type=click.Path(exists=True, file_okay=False),
                 help="Files under this folder are always kept (repeatable)."),
)

engine_options = _stack(
    click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
                 show_default=True,
                 help="Where still images are embedded and pairs searched: this "
                      "process, or a Ray cluster (pip install 'imgsim-index[ray]'). "
                      "This process still writes the index. With ray, dedupe's exact "
                      "search, and the on-disk IVF scan of a large index (every node "
                      "must see the index folder), run as cluster tasks; --approx of a "
                      "small index runs here."),
    click.option("--ray-address", default=None, metavar="ADDR",
                 help="Ray cluster for --engine ray (default: $RAY_ADDRESS, else a new "
                      "local Ray instance)."),
)


def embed_settings(*, device: str, backend: str, batch_size: int,
                   workers: int | None) -> EmbedSettings:
    from imgsim_index.embed.embedder import EmbedSettings

    return EmbedSettings(batch_size=batch_size, workers=workers, device=device, backend=backend)


def build_settings(*, model: str | None, weights: str | None, device: str, backend: str,
                   batch_size: int, workers: int | None, video_fps: float = 1.0,
                   checkpoint_every: int = 2048, wait: bool = False,
                   prune: bool = False, scan: ScanSettings | None = None) -> BuildSettings:
    """BuildSettings from embed_options (+ build_options, + --prune, + scan_settings) values.
    The defaults are BuildSettings' own, for commands that embed but never write (query)."""
    from imgsim_index.ingest.scan import ScanSettings
    from imgsim_index.pipeline.build import BuildSettings

    return BuildSettings(model=model, weights=weights, wait_for_lock=wait, video_fps=video_fps,
                         checkpoint_images=checkpoint_every, prune=prune,
                         scan=scan or ScanSettings(),
                         embed=embed_settings(device=device, backend=backend,
                                              batch_size=batch_size, workers=workers))


def scan_settings(*, include_hidden: bool, exclude: tuple[str, ...], min_size: int,
                  min_pixels: int) -> ScanSettings:
    from imgsim_index.ingest.scan import ScanSettings

    return ScanSettings(include_hidden=include_hidden, exclude=tuple(exclude),
                        min_size=min_size, min_pixels=min_pixels)


def skipped_line(skipped: dict[str, int]) -> str:
    """The build summary's count of files left out, per reason ("" when none)."""
    if not skipped:
        return ""
    parts = ", ".join(f"{n} {reason}" for reason, n in skipped.items())
    return f"Left out {sum(skipped.values())} files: {parts}."


@contextlib.contextmanager
def engine_session(engine: str, ray_address: str | None) -> Iterator[RayEngine | None]:
    """None for the local engine; else a RayEngine, checked now (Ray installed?) and closed
    at the end."""
    from imgsim_index.pipeline.ray_engine import make_engine

    session = make_engine(engine, ray_address)
    if session is None:
        yield None
        return
    # Ray Data's INFO lines and notes would bury our progress bars; failures still
    # reach us as exceptions.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    with session:
        yield session
