"""The command line: help everywhere, one-line errors, no tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from imgsim_index.cli.commands import cli


def run(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgsim_index", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for name, command in cli.commands.items():
        assert command.help, f"{name} has no help text"
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_module_entry_point_answers_help() -> None:
    r = run("--help")
    assert r.returncode == 0 and "dedupe" in r.stdout and "build" in r.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["dedupe", "--threshold", "2"], "--threshold"),
        (["dedupe", "--compare-mode", "half"], "--compare-mode"),
        (["dedupe", "--sample-ratio", "0"], "--sample-ratio"),
        (["dedupe", "--compare-scope", "folders"], "--compare-scope"),
        (["build"], "FOLDERS"),
        (["build", "/no/such/folder"], "no such folder or file: /no/such/folder"),
        (["build", ".", "--batch-size", "0"], "--batch-size"),
        (["build", ".", "--model", "vgg"], "--model"),
    ],
)
def test_bad_values_get_one_line_errors(args: list[str], expected: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run(*args, cwd=str(tmp_path))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("Error:") and expected in lines[0]
    assert "Traceback" not in r.stderr


def test_dedupe_without_an_index_says_how_to_build_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run("dedupe", "--index", str(tmp_path / "none"), cwd=str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"Error: no index at {tmp_path / 'none'} (missing manifest.json); build one with "
        "`imgsim-index build FOLDER --index DIR`"
    ]
