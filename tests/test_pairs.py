"""pairs: find_pairs against a brute-force float64 answer, in full and sample mode."""

from __future__ import annotations

import numpy as np
import pytest

from imgsim_index import search
from imgsim_index.errors import InputError
from imgsim_index.search import Pairs, PairSettings, exact_scores


def find_pairs(vectors: np.ndarray, settings: PairSettings, folders: np.ndarray | None = None,
               **kw: object) -> Pairs:
    """The exact search through the one entry point."""
    return search.find_pairs(vectors, settings, method="exact", folders=folders, **kw)[0]  # type: ignore[arg-type]

N, D = 700, 64
THRESHOLD = 0.99


@pytest.fixture(autouse=True, params=["fp32", "bf16"])
def precision(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with FAISS float32 tiles and with bf16 tiles (search/tiles.py): the
    answers must be the same, pair for pair and score for score."""
    real = search.resolve_precision
    monkeypatch.setattr(search, "resolve_precision",
                        lambda p, n=None: real(request.param) if p == "auto" else real(p))
    return str(request.param)


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _at_score(a: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose float64 cosine with unit `a` is exactly t (before float32)."""
    u = rng.standard_normal(a.shape[0])
    u -= (u @ a) * a
    u /= np.linalg.norm(u)
    return t * a + np.sqrt(1.0 - t * t) * u


def make_vectors(seed: int = 0, n: int = N, d: int = D, t: float = THRESHOLD) -> np.ndarray:
    """Random unit vectors with planted near-duplicates and pairs right at the threshold."""
    rng = np.random.default_rng(seed)
    x = _normalise(rng.standard_normal((n, d)))
    slots = rng.permutation(n)
    k = 0
    # near-duplicates: small noise, a few chained into groups of three
    for m in range(60):
        a, b = slots[k], slots[k + 1]
        k += 2
        x[b] = _normalise(x[a] + rng.normal(0, rng.uniform(0.001, 0.015), d))
        if m % 10 == 0:
            x[slots[k]] = _normalise(x[b] + rng.normal(0, 0.005, d))
            k += 1
    # pairs whose float64 score sits at, or just around, the threshold
    offsets = [0.0, 0.0, 0.0, 0.0, 1e-7, -1e-7, 4e-7, -4e-7, 5e-7, -5e-7, 6e-7, -6e-7,
               1e-6, -1e-6, 2e-6, -2e-6, 3e-5, -3e-5, 9e-5, -9e-5, 1.2e-4, -1.2e-4]
    for off in offsets:
        a, b = slots[k], slots[k + 1]
        k += 2
        x[b] = _at_score(x[a], t + off, rng)
    # exact copies, and one vector close to many (a hub)
    for _ in range(5):
        x[slots[k + 1]] = x[slots[k]]
        k += 2
    hub = slots[k]
    k += 1
    for _ in range(6):
        x[slots[k]] = _normalise(x[hub] + rng.normal(0, 0.01, d))
        k += 1
    return x.astype(np.float32)


def random_unit(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    return _normalise(np.random.default_rng(seed).standard_normal((n, d))).astype(np.float32)


def brute_force(x: np.ndarray, threshold: float,
                restrict: np.ndarray | None = None) -> dict[tuple[int, int], float]:
    """{(i, j): score} for i < j with round(float64 score, 6) >= threshold."""
    x64 = x.astype(np.float64)
    s = np.round(x64 @ x64.T, 6)
    i, j = np.nonzero(np.triu(s >= threshold, k=1))
    out = {(int(a), int(b)): float(s[a, b]) for a, b in zip(i, j, strict=True)}
    if restrict is not None:
        keep = set(restrict.tolist())
        out = {p: v for p, v in out.items() if p[0] in keep or p[1] in keep}
    return out


def as_dict(p: Pairs) -> dict[tuple[int, int], float]:
    d = {(int(a), int(b)): float(s) for a, b, s in zip(p.i, p.j, p.score, strict=True)}
    assert len(d) == len(p), "a pair came out twice"
    return d


def check_pairs(got: Pairs, want: dict[tuple[int, int], float]) -> None:
    d = as_dict(got)
    assert set(d) == set(want), (
        f"missing {sorted(set(want) - set(d))[:5]}, extra {sorted(set(d) - set(want))[:5]}")
    for key, score in want.items():
        assert abs(d[key] - score) <= 1e-5
    assert got.i.dtype == np.int64 and got.j.dtype == np.int64
    assert got.score.dtype == np.float64
    assert (got.i < got.j).all()
    order = list(zip((-got.score).tolist(), got.i.tolist(), got.j.tolist(), strict=True))
    assert order == sorted(order)  # score descending, then i, j


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return make_vectors()


def test_planted_threshold_pairs_straddle_the_threshold(vectors: np.ndarray) -> None:
    x64 = vectors.astype(np.float64)
    s = np.round(x64 @ x64.T, 6)
    np.fill_diagonal(s, -2)
    near = s[(s > THRESHOLD - 2e-6) & (s < THRESHOLD + 2e-6)]
    assert (near == THRESHOLD).sum() >= 2 * 4  # scores shown as exactly 0.990000
    assert (near < THRESHOLD).any() and (near > THRESHOLD).any()


@pytest.mark.parametrize("block_size", [128, 97, 700, 5000])
def test_full_mode_equals_brute_force(vectors: np.ndarray, block_size: int) -> None:
    got = find_pairs(vectors, PairSettings(threshold=THRESHOLD, block_size=block_size))
    want = brute_force(vectors, THRESHOLD)
    assert len(want) > 80
    check_pairs(got, want)


@pytest.mark.parametrize("threshold", [0.95, 0.9, 0.5, 0.999])
def test_other_thresholds(threshold: float) -> None:
    x = make_vectors(seed=3, n=400, d=32, t=threshold)
    got = find_pairs(x, PairSettings(threshold=threshold, block_size=128))
    want = brute_force(x, threshold)
    assert want
    check_pairs(got, want)


def test_threshold_minus_one_gives_every_pair() -> None:
    x = random_unit(60, seed=4)
    got = find_pairs(x, PairSettings(threshold=-1.0, block_size=16))
    assert len(got) == 60 * 59 // 2
    check_pairs(got, brute_force(x, -1.0))


def test_scores_are_the_rounded_float64_scores(vectors: np.ndarray) -> None:
    got = find_pairs(vectors, PairSettings(threshold=THRESHOLD, block_size=128))
    assert np.array_equal(got.score, exact_scores(vectors, got.i, got.j))
    assert np.array_equal(got.score, np.round(got.score, 6))


@pytest.mark.parametrize("ratio,seed", [(0.3, 0), (0.3, 1), (0.05, 7), (1.0, 0)])
def test_sample_mode_equals_brute_force_pairs_touching_the_sample(
        vectors: np.ndarray, ratio: float, seed: int) -> None:
    s = PairSettings(threshold=THRESHOLD, compare_mode="sample", sample_ratio=ratio, seed=seed,
                     block_size=128)
    got = find_pairs(vectors, s)
    sample = np.random.default_rng(seed).choice(N, round(ratio * N), replace=False)
    want = brute_force(vectors, THRESHOLD, restrict=sample)
    assert want
    check_pairs(got, want)
    if ratio < 1.0:
        assert len(want) < len(brute_force(vectors, THRESHOLD))
    else:
        assert set(want) == set(brute_force(vectors, THRESHOLD))
    again = find_pairs(vectors, s)
    assert np.array_equal(again.i, got.i) and np.array_equal(again.j, got.j)
    assert np.array_equal(again.score, got.score)


def test_sample_seed_changes_the_sample(vectors: np.ndarray) -> None:
    a = find_pairs(vectors, PairSettings(threshold=THRESHOLD, compare_mode="sample",
                                         sample_ratio=0.2, seed=1, block_size=128))
    b = find_pairs(vectors, PairSettings(threshold=THRESHOLD, compare_mode="sample",
                                         sample_ratio=0.2, seed=2, block_size=128))
    assert set(as_dict(a)) != set(as_dict(b))


def test_inter_folder_drops_same_folder_pairs(vectors: np.ndarray) -> None:
    folders = np.random.default_rng(5).integers(0, 3, N)
    s = PairSettings(threshold=THRESHOLD, compare_scope="inter_folder", block_size=128)
    got = find_pairs(vectors, s, folders)
    want = {p: v for p, v in brute_force(vectors, THRESHOLD).items()
            if folders[p[0]] != folders[p[1]]}
    assert want and len(want) < len(brute_force(vectors, THRESHOLD))
    check_pairs(got, want)
    # scope "all" ignores the folders
    everything = find_pairs(vectors, PairSettings(threshold=THRESHOLD, block_size=128), folders)
    check_pairs(everything, brute_force(vectors, THRESHOLD))
    # sample + inter_folder
    ss = PairSettings(threshold=THRESHOLD, compare_mode="sample", sample_ratio=0.4, seed=3,
                      compare_scope="inter_folder", block_size=128)
    sample = np.random.default_rng(3).choice(N, round(0.4 * N), replace=False)
    want_s = {p: v for p, v in brute_force(vectors, THRESHOLD, sample).items()
              if folders[p[0]] != folders[p[1]]}
    check_pairs(find_pairs(vectors, ss, folders), want_s)


def test_inter_folder_needs_folders(vectors: np.ndarray) -> None:
    with pytest.raises(InputError):
        find_pairs(vectors, PairSettings(compare_scope="inter_folder"))


@pytest.mark.parametrize("bad", [
    {"threshold": 1.5}, {"threshold": -1.01}, {"threshold": float("nan")},
    {"compare_mode": "fast"}, {"compare_scope": "folders"},
    {"compare_mode": "sample", "sample_ratio": 0.0}, {"sample_ratio": 1.2},
    {"sample_ratio": float("nan")}, {"block_size": 0}, {"precision": "fp16"},
])
def test_invalid_settings_raise_input_error(bad: dict[str, object]) -> None:
    s = PairSettings(**bad)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        s.validate()
    with pytest.raises(InputError):
        find_pairs(random_unit(10), s)


@pytest.mark.parametrize("mode", ["full", "sample"])
def test_zero_and_one_vectors(mode: str) -> None:
    s = PairSettings(threshold=0.5, compare_mode=mode, block_size=4)
    for n in (0, 1):
        x = random_unit(n)
        got = find_pairs(x, s)
        assert len(got) == 0
        assert got.i.shape == got.j.shape == got.score.shape == (0,)
    two = np.repeat(random_unit(1), 2, axis=0)  # two equal vectors
    got = find_pairs(two, PairSettings(threshold=0.99, compare_mode=mode, sample_ratio=0.5))
    assert as_dict(got) == {(0, 1): pytest.approx(1.0, abs=1e-6)}


def test_no_pair_above_threshold() -> None:
    x = np.eye(16, dtype=np.float32)  # orthogonal: every score is 0
    assert len(find_pairs(x, PairSettings(threshold=0.1, block_size=5))) == 0
    assert len(find_pairs(x, PairSettings(threshold=0.0, block_size=5))) == 16 * 15 // 2


@pytest.mark.parametrize("mode", ["full", "sample"])
def test_progress_reaches_its_total(vectors: np.ndarray, mode: str) -> None:
    calls: list[tuple[int, int]] = []
    find_pairs(vectors, PairSettings(threshold=THRESHOLD, compare_mode=mode, block_size=128),
               on_progress=lambda step, total: calls.append((step, total)))
    assert calls
    steps = [c[0] for c in calls]
    assert steps == list(range(1, len(calls) + 1))
    assert calls[-1][0] == calls[-1][1]


def test_worst_case_bf16_rounding_still_finds_the_pair(precision: str) -> None:
    """Components just below bf16 halfway points lose ~2^-8 each in the same direction,
    so a bf16 score is ~0.0077 low: the pair is found only thanks to BF16_MARGIN."""
    d, k = 4096, 4032
    v = np.zeros(d, np.float32)
    v[:k] = (1 + 2.0**-8 - 2.0**-16) * 2.0**-6
    rng = np.random.default_rng(0)
    others = _normalise(rng.standard_normal((30, d))).astype(np.float32)
    x = np.vstack([v, v, others])
    exact = float(v.astype(np.float64) @ v.astype(np.float64))
    threshold = np.floor(exact * 1e6) / 1e6
    got = find_pairs(x, PairSettings(threshold=threshold, block_size=16))
    assert [(int(a), int(b)) for a, b in zip(got.i, got.j, strict=True)] == [(0, 1)]
    assert got.score[0] == round(exact, 6)
