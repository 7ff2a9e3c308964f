"""defaults.py holds each default once: the package's code repeats none of them."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

import imgsim_index
from imgsim_index import defaults

PACKAGE = Path(imgsim_index.__file__).parent
DEFAULTS = PACKAGE / "defaults.py"


def _sources() -> list[Path]:
    files = sorted(p for p in PACKAGE.rglob("*.py") if p != DEFAULTS)
    assert len(files) > 50  # the scan sees the whole package
    return files


def test_default_threshold_is_written_once() -> None:
    """A NUMBER token equal to the default candidate threshold anywhere but defaults.py is
    a second definition (prose in comments and docstrings is not code and is allowed)."""
    found = []
    for path in _sources():
        with open(path, "rb") as fh:
            for tok in tokenize.tokenize(fh.readline):
                if tok.type == tokenize.NUMBER and \
                        ast.literal_eval(tok.string) == defaults.DEFAULT_THRESHOLD:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{tok.start[0]}")
    assert not found, (f"the default threshold {defaults.DEFAULT_THRESHOLD} is written in "
                       f"{found}; import it from imgsim_index.defaults")
    source = DEFAULTS.read_bytes()
    numbers = [t.string for t in tokenize.tokenize(io.BytesIO(source).readline)
               if t.type == tokenize.NUMBER]
    assert numbers.count(str(defaults.DEFAULT_THRESHOLD)) == 1


def _trees() -> list[tuple[Path, ast.AST]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in _sources()]


def test_identity_keys_are_listed_once() -> None:
    """No module spells the index identity (model, dim, weights_id, preprocessing) as its own
    sequence of names; they import defaults.IDENTITY_KEYS."""
    keys = set(defaults.IDENTITY_KEYS)
    found = []
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and {
                    e.value if isinstance(e, ast.Constant) else None for e in node.elts} == keys:
                found.append(f"{path.name}:{node.lineno}")
    assert not found, f"identity keys listed again in {found}; use defaults.IDENTITY_KEYS"


def test_core_counts_are_read_in_one_place() -> None:
    """Worker counts follow one policy module: only defaults.py asks the OS for cores."""
    found = []
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("cpu_count",
                                                                 "sched_getaffinity"):
                found.append(f"{path.name}:{node.lineno}")
    assert not found, f"cores counted outside defaults.py in {found}; use its functions"


def test_keep_default_is_a_policy_and_the_cli_default() -> None:
    from imgsim_index.cli import cli
    from imgsim_index.groups.keep import KEEP_POLICIES, KeepSettings
    from imgsim_index.serve.body import DedupeBody

    assert defaults.DEFAULT_KEEP in KEEP_POLICIES
    assert KeepSettings().policy == defaults.DEFAULT_KEEP
    assert DedupeBody().keep == defaults.DEFAULT_KEEP
    dedupe = cli.commands["dedupe"]
    keep = next(p for p in dedupe.params if p.name == "keep")
    assert keep.default == defaults.DEFAULT_KEEP


def test_thresholds_and_worker_policies_keep_their_values() -> None:
    from imgsim_index.search import PairSettings
    from imgsim_index.verify import candidate_threshold

    assert PairSettings().cutoff == defaults.DEFAULT_THRESHOLD
    assert candidate_threshold("resnet50") == defaults.DEFAULT_THRESHOLD
    assert candidate_threshold("efficientnet-lite0") == pytest.approx(0.75)
    assert candidate_threshold("efficientnet-lite0", verify=False) == defaults.DEFAULT_THRESHOLD
    assert candidate_threshold("some-other-net") == defaults.FALLBACK_THRESHOLD
    cores = defaults.usable_cores()
    assert cores >= 1
    assert defaults.embed_workers() == max(1, min(defaults.MAX_EMBED_WORKERS, cores - 1))
    assert defaults.verify_threads() == min(defaults.MAX_VERIFY_THREADS, cores)
    assert defaults.thumbnail_workers() == min(defaults.MAX_THUMBNAIL_WORKERS, cores)
    assert defaults.decode_slots() == cores


def test_help_shows_the_defaults_module_values() -> None:
    from click.testing import CliRunner

    from imgsim_index.cli import cli

    out = CliRunner().invoke(cli, ["dedupe", "--help"], terminal_width=200).output
    assert f"resnet50 {defaults.CANDIDATE_THRESHOLDS['resnet50']}" in " ".join(out.split())
    assert f"at most {defaults.MAX_EMBED_WORKERS}" in " ".join(out.split())
