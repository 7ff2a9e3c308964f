"""pairs_approx: IVF candidates re-scored exactly -> a subset of exact pairs, exact scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgsim_index import search
from imgsim_index.errors import InputError
from imgsim_index.index.import_vectors import import_vectors
from imgsim_index.pipeline.dedupe import DedupeSettings, dedupe
from imgsim_index.search import ApproxSettings, Pairs, PairSettings, exact_scores
from imgsim_index.search.approx import assign_cells, pca_basis
from imgsim_index.search.settings import AUTO_APPROX_ABOVE, choose_method
from imgsim_index.search.tiles import BF16_MARGIN


def find_pairs(vectors: np.ndarray, settings: PairSettings, folders: np.ndarray | None = None,
               ) -> Pairs:
    return search.find_pairs(vectors, settings, method="exact", folders=folders)[0]


def find_pairs_approx(vectors: np.ndarray, settings: PairSettings,
                      approx: ApproxSettings | None = None, folders: np.ndarray | None = None,
                      ) -> Pairs:
    return search.find_pairs(vectors, settings, method="approx", approx=approx,
                             folders=folders)[0]


def use_approx(method: str, n: int, settings: PairSettings, partial: bool = False) -> bool:
    return choose_method(method, n, settings, partial) == "approx"

N, D = 3000, 64
SMALL = ApproxSettings(nlist=40, nprobe=4, coarse_dim=16, seed=1)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def clustered(seed: int = 0, n: int = N, d: int = D, pairs: int = 150,
              at: int = 5) -> np.ndarray:
    """Vectors around 30 centres (so k-means has structure), with near-duplicate pairs
    from cosine ~0.9 up, a few exact copies, and pairs right at 0.95."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((30, d)))
    x = _unit(centres[rng.integers(0, 30, n)] + 0.6 * rng.standard_normal((n, d)) / np.sqrt(d)
              + 0.5 * _unit(rng.standard_normal((n, d))))
    slots = rng.permutation(n)
    for k in range(pairs):
        a, b = slots[2 * k], slots[2 * k + 1]
        x[b] = _unit(x[a] + rng.normal(0, rng.uniform(0.0, 0.06), d))
    for k in range(pairs, pairs + at):  # pairs scoring exactly 0.95 in float64
        a, b = slots[2 * k], slots[2 * k + 1]
        u = rng.standard_normal(d)
        u = _unit(u - (u @ x[a]) * x[a])
        x[b] = 0.95 * x[a] + np.sqrt(1 - 0.95**2) * u
    return x.astype(np.float32)


def as_dict(p: Pairs) -> dict[tuple[int, int], float]:
    return {(int(a), int(b)): float(s) for a, b, s in zip(p.i, p.j, p.score, strict=True)}


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered()


@pytest.mark.parametrize("threshold", [0.9, 0.95, 0.99])
def test_approx_pairs_are_exact_pairs_with_exact_scores(vectors: np.ndarray,
                                                        threshold: float) -> None:
    settings = PairSettings(threshold=threshold)
    exact = as_dict(find_pairs(vectors, settings))
    got = find_pairs_approx(vectors, settings, SMALL)
    approx = as_dict(got)
    assert len(approx) == len(got), "a pair came out twice"
    assert exact and set(approx) <= set(exact)
    assert all(approx[p] == exact[p] for p in approx)  # the same float64 scores
    assert len(approx) >= 0.97 * len(exact)  # near-duplicates share cells
    assert np.array_equal(got.score, exact_scores(vectors, got.i, got.j))
    assert (got.i < got.j).all() and got.i.dtype == np.int64 and got.score.dtype == np.float64
    order = list(zip((-got.score).tolist(), got.i.tolist(), got.j.tolist(), strict=True))
    assert order == sorted(order)


def test_pairs_at_the_threshold_are_kept(vectors: np.ndarray) -> None:
    exact = as_dict(find_pairs(vectors, PairSettings(threshold=0.95)))
    at = {p for p, s in exact.items() if s == 0.95}
    assert len(at) >= 3
    approx = as_dict(find_pairs_approx(vectors, PairSettings(threshold=0.95),
                                       ApproxSettings(nlist=40, nprobe=12, coarse_dim=16)))
    assert at <= set(approx)


def test_probing_every_cell_equals_exact(vectors: np.ndarray) -> None:
    settings = PairSettings(threshold=0.9)
    exact = as_dict(find_pairs(vectors, settings))
    for a in (ApproxSettings(nlist=8, nprobe=7, coarse_dim=16),  # cells, all but one probed
              ApproxSettings(nlist=8, nprobe=8, coarse_dim=16)):  # falls back to exact
        got = as_dict(find_pairs_approx(vectors, settings, a))
        if a.nprobe == 8:
            assert got == exact
        else:
            assert set(got) <= set(exact) and len(got) >= 0.995 * len(exact)


@pytest.mark.parametrize("threshold", [0.9, 0.95, 0.99])
def test_bf16_candidates_lose_nothing_against_fp32(vectors: np.ndarray, threshold: float
                                                  ) -> None:
    """bf16 scores with BF16_MARGIN give a superset of the fp32 candidates; after the
    float64 re-score both give the same pairs, including those right at 0.95."""
    got = {}
    for precision in ("fp32", "bf16"):
        settings = PairSettings(threshold=threshold, precision=precision)
        got[precision] = find_pairs_approx(vectors, settings, SMALL)
    assert as_dict(got["bf16"]) == as_dict(got["fp32"])
    assert np.array_equal(got["bf16"].i, got["fp32"].i)


def test_bf16_margin_covers_the_worst_rounding() -> None:
    """Every component just below a bf16 halfway point, so every input loses ~2^-8 of its
    value in the same direction (the worst case, ~2u on the score): still inside
    BF16_MARGIN."""
    import torch

    d = 4096
    x = np.full((1, d), (1 + 2.0**-8 - 2.0**-16) * 2.0**-6, np.float32)  # norm ~1.004
    exact = float(x[0].astype(np.float64) @ x[0].astype(np.float64))
    t = torch.from_numpy(x).bfloat16()
    approx = float(torch.mm(t, t.T).double().item())
    assert 0.007 < exact - approx < BF16_MARGIN


def test_more_probes_find_at_least_as_much(vectors: np.ndarray) -> None:
    settings = PairSettings(threshold=0.9)
    few = set(as_dict(find_pairs_approx(vectors, settings, ApproxSettings(
        nlist=60, nprobe=1, coarse_dim=16))))
    many = set(as_dict(find_pairs_approx(vectors, settings, ApproxSettings(
        nlist=60, nprobe=6, coarse_dim=16))))
    assert few <= many


def test_deterministic_for_a_seed(vectors: np.ndarray) -> None:
    a = find_pairs_approx(vectors, PairSettings(threshold=0.9), SMALL)
    b = find_pairs_approx(vectors, PairSettings(threshold=0.9), SMALL)
    assert np.array_equal(a.i, b.i) and np.array_equal(a.j, b.j)
    assert np.array_equal(a.score, b.score)


def test_cells_probe_nearest_first(vectors: np.ndarray) -> None:
    probes = assign_cells(vectors, SMALL, 40, 4)
    assert probes.shape == (N, 4) and probes.dtype == np.int64
    assert ((probes >= 0) & (probes < 40)).all()
    assert all(len(set(row)) == 4 for row in probes.tolist())
    assert len(np.unique(probes[:, 0])) > 20  # vectors spread over the cells


def test_inter_folder(vectors: np.ndarray) -> None:
    folders = np.random.default_rng(2).integers(0, 3, N)
    s = PairSettings(threshold=0.9, compare_scope="inter_folder")
    got = as_dict(find_pairs_approx(vectors, s, SMALL, folders))
    every = as_dict(find_pairs_approx(vectors, PairSettings(threshold=0.9), SMALL))
    assert got == {p: v for p, v in every.items() if folders[p[0]] != folders[p[1]]}
    assert got and len(got) < len(every)
    with pytest.raises(InputError):
        find_pairs_approx(vectors, s, SMALL)


@pytest.mark.parametrize("n", [0, 1, 2, 50])
def test_tiny_inputs(n: int) -> None:
    x = clustered(n=max(n, 2), pairs=1, at=0)[:n]
    exact = as_dict(find_pairs(x, PairSettings(threshold=0.5)))
    for a in (ApproxSettings(nprobe=2), ApproxSettings(nprobe=2, nlist=40, coarse_dim=8)):
        got = as_dict(find_pairs_approx(x, PairSettings(threshold=0.5), a))
        assert set(got) <= set(exact) and all(got[p] == exact[p] for p in got)


def test_pca_basis_finds_the_principal_subspace() -> None:
    rng = np.random.default_rng(0)
    d = 128
    mix = rng.standard_normal((d, d)) * (0.85 ** np.arange(d))
    s = (rng.standard_normal((4000, d)) @ mix.T + 3.0).astype(np.float32)
    mean, basis = pca_basis(s, 12, rng)
    np.testing.assert_allclose(mean, s.mean(axis=0), atol=1e-4)
    _, v = np.linalg.eigh(np.cov(s.T.astype(np.float64)))
    top = v[:, ::-1][:, :12]
    overlap = np.linalg.svd(basis.astype(np.float64) @ top, compute_uv=False)
    assert overlap.min() > 0.999
    np.testing.assert_allclose(basis @ basis.T, np.eye(12), atol=1e-4)


def test_auto_choice_and_bad_combinations() -> None:
    full, sample = PairSettings(), PairSettings(compare_mode="sample")
    assert not use_approx("auto", AUTO_APPROX_ABOVE, full)
    assert use_approx("auto", AUTO_APPROX_ABOVE + 1, full)
    assert not use_approx("auto", 10**7, sample)
    assert not use_approx("auto", 10**7, full, partial=True)
    assert use_approx("approx", 10, full) and not use_approx("exact", 10**7, full)
    with pytest.raises(InputError, match="sample"):
        use_approx("approx", 10, sample)
    with pytest.raises(InputError, match="new-only"):
        use_approx("approx", 10, full, partial=True)
    with pytest.raises(InputError):
        use_approx("fast", 10, full)
    with pytest.raises(InputError):
        find_pairs_approx(clustered(n=10, pairs=1, at=0), sample)


def test_nprobe_follows_the_threshold_unless_set() -> None:
    auto = ApproxSettings()
    assert [auto.probes_for(t) for t in (0.99, 0.97, 0.95, 0.9, 0.5)] == [8, 8, 12, 24, 32]
    assert ApproxSettings(nprobe=5).probes_for(0.5) == 5


@pytest.mark.parametrize("bad", [{"nprobe": 0}, {"nlist": 0}, {"coarse_dim": -1},
                                 {"tile": 0}, {"kmeans_iter": 0}])
def test_invalid_settings(bad: dict[str, object]) -> None:
    with pytest.raises(InputError):
        ApproxSettings(**bad).validate()  # type: ignore[arg-type]


def test_dedupe_with_approx_reports_it(tmp_path: Path, vectors: np.ndarray) -> None:
    np.save(tmp_path / "v.npy", vectors)
    paths = [f"/photos/{k:05d}.jpg" for k in range(N)]
    (tmp_path / "p.txt").write_text("\n".join(paths) + "\n")
    import_vectors(str(tmp_path / "v.npy"), str(tmp_path / "p.txt"), str(tmp_path / "idx"))
    runs = {}
    for method in ("exact", "approx"):
        r = dedupe(str(tmp_path / "idx"), None, DedupeSettings(
            pairs=PairSettings(threshold=0.95), output=str(tmp_path / method), search=method,
            approx=ApproxSettings(nlist=40, nprobe=12, coarse_dim=16)))
        assert r.report["pair_search"]["method"] == method
        runs[method] = {(p["image1"], p["image2"]) for p in r.report["similar_pairs"]}
    assert runs["approx"] <= runs["exact"] and len(runs["approx"]) >= 0.99 * len(runs["exact"])
    assert r.report["pair_search"]["nprobe"] == 12
    with pytest.raises(InputError, match="sample"):
        dedupe(str(tmp_path / "idx"), None, DedupeSettings(
            pairs=PairSettings(compare_mode="sample"), search="approx",
            output=str(tmp_path / "x")))


def test_cli_approx_takes_nprobe_and_reports_precision(tmp_path: Path, vectors: np.ndarray
                                                       ) -> None:
    import json

    from click.testing import CliRunner

    from imgsim_index.cli import cli

    np.save(tmp_path / "v.npy", vectors)
    (tmp_path / "p.txt").write_text("".join(f"/photos/{k:05d}.jpg\n" for k in range(N)))
    import_vectors(str(tmp_path / "v.npy"), str(tmp_path / "p.txt"), str(tmp_path / "idx"))
    runner = CliRunner()
    res = runner.invoke(cli, ["dedupe", "--index", str(tmp_path / "idx"), "--approx",
                              "--nprobe", "5", "--threshold", "0.95", "--output",
                              str(tmp_path / "out"), "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads(next((tmp_path / "out").glob("*/report.json")).read_text())
    assert report["pair_search"]["nprobe"] == 5
    assert report["pair_search"]["precision"] in ("bf16", "fp32")
    bad = runner.invoke(cli, ["dedupe", "--index", str(tmp_path / "idx"), "--nprobe", "0"])
    assert bad.exit_code == 2 and "--nprobe" in bad.output
