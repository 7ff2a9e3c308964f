"""report.json's contract: the shipped JSON Schema validates real reports, the typed
`Report` and the schema name the same keys, and the report's bytes stay what they were."""

from __future__ import annotations

import fnmatch
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, cli_ok, report_of
from report_sample import sample_report

from imgsim_index.report import contract
from imgsim_index.report.json_report import write_report

jsonschema = pytest.importorskip("jsonschema")

GOLDEN = Path(__file__).parent / "data" / "report_golden.json"


def _validate(report: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(contract.report_schema())
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.absolute_path))
    assert not errors, "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])


def test_schema_is_valid_draft_2020_12() -> None:
    schema = contract.report_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_report_bytes_are_unchanged(tmp_path: Path) -> None:
    """The same inputs give the same report.json, byte for byte, as before the report was
    typed (tests/data/report_golden.json was written by the untyped build_report; its
    report_schema_version is 4 since not_verified became a match of its own)."""
    out = tmp_path / "report.json"
    write_report(sample_report(), str(out))
    assert out.read_bytes() == GOLDEN.read_bytes()


def test_sample_report_validates_and_a_wrong_one_does_not() -> None:
    report = sample_report()
    _validate(report)
    for broken in ({**report, "surprise": 1}, {**report, "threshold": "0.9"},
                   {k: v for k, v in report.items() if k != "groups"}):
        with pytest.raises(AssertionError):
            _validate(broken)


@pytest.fixture(scope="module")
def real_reports(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """A dedupe of a folder into a new index (verified, hash channel, skipped files), then
    a new-only dedupe and a cosine-only one of that index."""
    work = tmp_path_factory.mktemp("contract")
    images = work / "images"
    shutil.copytree(samples / "images", images)
    (images / "notes.txt").write_text("not an image")
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    idx, out = str(work / "idx"), str(work / "out")
    first = report_of(cli_ok("dedupe", images, "--index", idx, "--model", "efficientnet-lite0",
                             "--output", out))
    new_only = report_of(cli_ok("dedupe", "--index", idx, "--new-only", "--output", out))
    cosine = report_of(cli_ok("dedupe", "--index", idx, "--verify", "off", "--threshold", "0.9",
                              "--output", out))
    return [first, new_only, cosine]


def test_real_reports_validate_against_the_schema(real_reports: list[Any]) -> None:
    first, new_only, cosine = real_reports
    assert first["similar_pairs"] and first["groups"] and first["errors"]
    assert "hash_candidates" in first["verification"] and "skipped" in first
    assert new_only["compare_mode"] == "new_only"
    assert cosine["verification"]["ran"] is False
    for report in real_reports:
        _validate(report)


def _keys(td: Any) -> tuple[set[str], set[str]]:
    return set(td.__required_keys__), set(td.__required_keys__) | set(td.__optional_keys__)


def test_typed_report_and_schema_name_the_same_keys() -> None:
    schema = contract.report_schema()
    defs = schema["$defs"]
    verification = schema["properties"]["verification"]
    for td, part in [(contract.Report, schema), (contract.PairRow, defs["pair"]),
                     (contract.Group, defs["group"]), (contract.Member, defs["member"]),
                     (contract.Verification, verification)]:
        required, every = _keys(td)
        assert set(part["required"]) == required, td.__name__
        assert set(part["properties"]) == every, td.__name__


def test_schema_ships_as_package_data_and_readme_links_it() -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["imgsim_index"]
    shipped = f"report/{contract.SCHEMA_FILE}"
    assert any(fnmatch.fnmatch(shipped, p) for p in patterns), patterns
    assert (ROOT / "imgsim_index" / shipped).is_file()
    assert f"imgsim_index/{shipped}" in (ROOT / "README.md").read_text()


def test_schema_lists_every_match_a_verdict_has() -> None:
    from imgsim_index.verify.verdict import MATCHES

    pair = contract.report_schema()["$defs"]["pair"]["properties"]
    assert pair["match"]["enum"] == list(MATCHES)
    assert "not_verified" in MATCHES


def test_a_schema_3_not_verified_pair_reads_as_not_verified() -> None:
    old: Any = {"index": 0, "image1": "a", "image2": "b", "similarity_score": 0.99,
                "match": "other_shot", "evidence": "not verified: could not read it"}
    assert contract.pair_match(old) == "not_verified"
    assert contract.pair_match({**old, "evidence": "other shot: 14% differs"}) == "other_shot"
    assert contract.pair_match({**old, "match": "copy",
                                "evidence": "not verified (cosine only)"}) == "copy"
