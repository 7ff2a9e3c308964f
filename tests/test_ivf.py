"""The on-disk IVF of large indexes: exact pairs against brute force, incremental parts,
new-only equal to a whole dedupe restricted to new rows, changed and removed rows, merges,
FAISS's own reader, crashes (SIGKILL), a full disk, verify and repair, conversion of a
flat index on first use. Indexes are made small by lowering ivf.IVF_ABOVE."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from imgsim_index.index import ivf
from imgsim_index.index.catalog import Catalog
from imgsim_index.index.check import verify_index
from imgsim_index.index.import_vectors import ImportSettings, import_vectors
from imgsim_index.index.store import IndexStore
from imgsim_index.pipeline.dedupe import DedupeSettings, find_duplicates
from imgsim_index.search import PairSettings

DIM = 48
ROOT = Path(__file__).resolve().parents[1]


def clustered(n: int, seed: int, planted: int, start: int = 0,
              old: np.ndarray | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Clustered unit vectors (rows start..start+n-1) and planted near-duplicate pairs at
    cosine 0.9-0.99: within the block, or of rows of `old` when given."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((max(4, n // 500), DIM))
    x = centres[rng.integers(0, len(centres), n)] + 1.2 * rng.standard_normal((n, DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pairs = []
    for k in range(planted):
        b = start + n - 1 - k
        a = int(rng.integers(0, start)) if old is not None else start + k
        va = old[a] if old is not None else x[a - start]
        t = rng.uniform(0.9, 0.99)
        u = rng.standard_normal(DIM)
        u -= (u @ va) * va
        x[b - start] = t * va + np.sqrt(1 - t * t) * u / np.linalg.norm(u)
        pairs.append((a, b))
    return x.astype(np.float32), pairs


def path(k: int) -> str:
    return f"/cams/c{k % 3}/f{k:07d}.jpg"


def add(index: Path, x: np.ndarray, start: int, tmp: Path) -> None:
    np.save(tmp / "v.npy", x)
    (tmp / "v.paths").write_text("".join(path(k) + "\n" for k in range(start, start + len(x))))
    import_vectors(str(tmp / "v.npy"), str(tmp / "v.paths"), str(index), ImportSettings())


def ivf_index(tmp: Path, n: int, seed: int, planted: int
              ) -> tuple[Path, np.ndarray, list[tuple[int, int]], ivf.IvfManifest]:
    """clustered(n, seed, planted) imported into tmp/index, an IVF (with small_ivf): the
    folder, the vectors, the planted pairs and the IVF's manifest."""
    index = tmp / "index"
    x, planted_pairs = clustered(n, seed, planted)
    add(index, x, 0, tmp)
    manifest = ivf.read_manifest(str(index))
    assert manifest is not None
    return index, x, planted_pairs, manifest


def pairs_of(index: Path, **kw: object) -> set[tuple[str, str, float]]:
    s = DedupeSettings(pairs=PairSettings(threshold=0.85))
    d = find_duplicates(str(index), settings=replace(s, **kw))  # type: ignore[arg-type]
    return {(*sorted((a, b)), sc) for a, b, sc in d.pair_paths()}  # type: ignore[misc]


@pytest.fixture
def small_ivf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ivf, "IVF_ABOVE", 500)


def test_an_exhaustive_ivf_gives_exactly_the_brute_force_pairs(tmp_path: Path,
                                                                small_ivf: None) -> None:
    # 16 lists, all probed: nothing left to chance
    index, _, planted, manifest = ivf_index(tmp_path, 1000, 0, 20)
    assert manifest.nlist == 16 and manifest.count == 1000
    got = pairs_of(index)
    want = pairs_of(index, search="exact")
    assert got == want and len(want) >= 20
    assert {tuple(sorted((path(a), path(b)))) for a, b in planted} <= {(a, b) for a, b, _ in got}
    d = find_duplicates(str(index), settings=DedupeSettings(pairs=PairSettings(threshold=0.85)))
    assert d.search.method == "ivf" and d.to_report()["total_images_in_folders"] == 1000
    assert d.to_report()["number_of_unique_groups"] == 1000 - d.groups.n_removable


def test_a_larger_ivf_finds_the_planted_pairs_with_exact_scores(tmp_path: Path,
                                                                 small_ivf: None) -> None:
    index = tmp_path / "index"
    x, planted = clustered(20_000, 1, 60)
    add(index, x, 0, tmp_path)
    got, want = pairs_of(index), pairs_of(index, search="exact")
    assert got <= want  # every pair is a true pair with its exact score
    assert {tuple(sorted((path(a), path(b)))) for a, b in planted} <= {(a, b) for a, b, _ in got}


def test_a_scan_in_many_passes_finds_the_same_pairs(tmp_path: Path, small_ivf: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget that holds a few lists: the scan takes many blocks of target lists, each
    list read as a target once, and finds exactly what one pass finds."""
    from imgsim_index.search import ivf_search

    index = tmp_path / "index"
    x, _ = clustered(20_000, 1, 60)
    add(index, x, 0, tmp_path)
    one_pass = pairs_of(index)
    monkeypatch.setattr(ivf_search, "cache_budget", lambda *a: 60_000)  # ~4 lists of 48-d
    passes = find_duplicates(str(index), settings=DedupeSettings(
        pairs=PairSettings(threshold=0.85)))
    manifest = ivf.read_manifest(str(index))
    assert manifest is not None
    lists = manifest.nlist
    assert passes.search.details["lists_read"] > 3 * lists  # queries read once per pass
    assert {(*sorted((a, b)), sc) for a, b, sc in passes.pair_paths()} == one_pass


def test_new_vectors_go_into_a_new_part_and_new_only_equals_whole_restricted(
        tmp_path: Path, small_ivf: None) -> None:
    index, x, _, first = ivf_index(tmp_path, 5000, 2, 30)
    part_file = index / "ivf" / f"{first.parts[0].name}.ivfdata"
    before = part_file.stat()
    d = find_duplicates(str(index), settings=DedupeSettings(pairs=PairSettings(threshold=0.85)))
    IndexStore.record_dedupe(str(index), d.snapshot_seq)
    x2, planted = clustered(300, 3, 25, start=5000, old=x)
    add(index, x2, 5000, tmp_path)
    after = ivf.read_manifest(str(index))
    assert after is not None and len(after.parts) == 2 and after.parts[1].count == 300
    st = part_file.stat()  # the old part was not rewritten: new work costs what is new
    assert (st.st_ino, st.st_mtime_ns, st.st_size) == (before.st_ino, before.st_mtime_ns,
                                                      before.st_size)
    new_only = pairs_of(index, new_only=True)
    new = {path(k) for k in range(5000, 5300)}
    whole = pairs_of(index)
    assert new_only == {p for p in whole if p[0] in new or p[1] in new}
    assert {tuple(sorted((path(a), path(b)))) for a, b in planted} <= {(a, b)
                                                                        for a, b, _ in new_only}
    assert whole <= pairs_of(index, search="exact")


def test_changed_and_removed_rows_are_never_searched_with_their_old_vectors(
        tmp_path: Path, small_ivf: None) -> None:
    index = tmp_path / "index"
    x, _ = clustered(1000, 4, 10)
    add(index, x, 0, tmp_path)
    # rows 0..9 get new vectors: copies of rows 500..509 (the index keeps their ids)
    changed = x[500:510] * 0.999 + 0.001 * x[0:10]
    changed /= np.linalg.norm(changed, axis=1, keepdims=True)
    add(index, changed.astype(np.float32), 0, tmp_path)
    with IndexStore.open_updater(str(index)) as store:
        store.remove_paths([path(k) for k in range(990, 1000)])  # planted copies removed
    got, want = pairs_of(index), pairs_of(index, search="exact")
    assert got == want
    names = {n for a, b, _ in got for n in (a, b)}
    assert {path(k) for k in range(10)} <= names  # found through their new vectors
    assert not names & {path(k) for k in range(990, 1000)}


def test_many_parts_are_merged_into_one_with_the_same_pairs(tmp_path: Path,
                                                            small_ivf: None) -> None:
    index = tmp_path / "index"
    x, _ = clustered(1000, 5, 10)
    for s in range(0, 1000, 100):
        add(index, x[s:s + 100], s, tmp_path)
    manifest = ivf.read_manifest(str(index))
    assert manifest is not None and len(manifest.parts) <= ivf.MAX_PARTS
    assert manifest.count == 1000
    assert pairs_of(index) == pairs_of(index, search="exact")
    names = set(os.listdir(index / "ivf"))
    assert names == {"ivf.json", manifest.coarse,
                     *(f for p in manifest.parts for f in ivf.part_files(p.name))}


def test_faiss_reads_a_part_with_its_own_reader(tmp_path: Path, small_ivf: None) -> None:
    import faiss

    index, x, planted, manifest = ivf_index(tmp_path, 1000, 6, 5)
    part = index / "ivf" / f"{manifest.parts[0].name}.faiss"
    f = faiss.read_index(str(part), faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY)
    assert f.ntotal == 1000 and f.nlist == manifest.nlist
    f.nprobe = f.nlist
    cat = Catalog(str(index / "catalog.sqlite"), readonly=True)
    ids = {path(k): r.id for k in range(1000) if (r := cat.row_of(path(k))) is not None}
    cat.close()
    for a, b in planted:
        _, found = f.search(x[a:a + 1], 2)  # SQ8: the copy is among the two nearest
        assert ids[path(b)] in found[0].tolist()


def run_cli(args: list[str], limit: int | None = None) -> subprocess.CompletedProcess[str]:
    code = ("import sys; from imgsim_index.index import ivf; ivf.IVF_ABOVE = 500; "
            "from imgsim_index.cli import main; sys.argv = ['imgsim-index', *sys.argv[1:]]; "
            "main()")

    def limit_writes() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=str(ROOT), preexec_fn=limit_writes, timeout=300)


def test_a_flat_index_is_converted_on_first_use_and_a_full_disk_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "index"
    x, _ = clustered(3000, 7, 20)
    add(index, x, 0, tmp_path)  # the default IVF_ABOVE: a flat index
    assert not (index / "ivf").exists()
    full = run_cli(["dedupe", "--index", str(index), "--threshold", "0.85", "-q", "--output",
                    str(tmp_path / "out")], limit=200_000)
    assert full.returncode == 1
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left" in lines[0] and "IVF" in lines[0], full.stderr
    assert ivf.read_manifest(str(index)) is None  # nothing half-made is taken for an IVF
    want = pairs_of(index, search="exact")
    monkeypatch.setattr(ivf, "IVF_ABOVE", 500)
    assert pairs_of(index) == want
    assert ivf.read_manifest(str(index)) is not None
    report = verify_index(str(index))
    assert report.ok, report.problems


@pytest.mark.parametrize("after", [0.6, 1.0, 1.4])  # sampling, training, filing
def test_sigkill_while_the_ivf_is_built_leaves_the_index_usable(
        tmp_path: Path, small_ivf: None, after: float) -> None:
    index = tmp_path / "index"
    x, _ = clustered(40_000, 8, 40)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(ivf, "IVF_ABOVE", 10**9)
        add(index, x, 0, tmp_path)
    code = ("import sys; from imgsim_index.index.store import IndexStore; "
            f"s = IndexStore.open_updater({str(index)!r}); s.update_ivf(force=True)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=str(ROOT))
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    report = verify_index(str(index))
    assert report.ok, report.problems
    got = pairs_of(index)  # makes or completes the IVF, then searches it
    assert got <= pairs_of(index, search="exact") and len(got) >= 40
    assert verify_index(str(index)).ok


def test_verify_names_a_damaged_ivf_and_repair_rebuilds_it(tmp_path: Path,
                                                            small_ivf: None) -> None:
    index, _, _, manifest = ivf_index(tmp_path, 1000, 9, 10)
    data = index / "ivf" / f"{manifest.parts[0].name}.ivfdata"
    with open(data, "r+b") as fh:
        fh.truncate(data.stat().st_size // 2)
    report = verify_index(str(index))
    assert not report.ok
    assert any("IVF part" in p and manifest.parts[0].name in p for p in report.problems)
    with pytest.raises(Exception, match="truncated|verify --repair"):
        pairs_of(index)
    fixed = verify_index(str(index), repair=True)
    assert any("rebuilt the on-disk IVF" in r for r in fixed.repaired)
    assert verify_index(str(index)).ok
    assert pairs_of(index) == pairs_of(index, search="exact")


def test_a_query_reads_only_its_lists_and_ranks_exactly(tmp_path: Path,
                                                        small_ivf: None) -> None:
    from imgsim_index.pipeline.query import _search_stored

    index = tmp_path / "index"
    x, planted = clustered(1000, 10, 10)  # 16 lists, every one probed: exact top-k
    add(index, x, 0, tmp_path)
    x2, _ = clustered(50, 11, 0, start=1000)
    with pytest.MonkeyPatch.context() as m:  # committed, not yet filed into the IVF
        m.setattr(IndexStore, "update_ivf", lambda self, *a, **k: None)
        add(index, x2, 1000, tmp_path)
    queries = np.concatenate([x[[a for a, _ in planted]], x2[:3]])
    ok = np.ones(len(queries), bool)
    with IndexStore.open_reader(str(index)) as store:
        got = _search_stored(store, queries, ok, 5)
        manifest = ivf.read_manifest(str(index))
        assert manifest is not None and manifest.covered_seq < store.catalog.last_seq()
        flat = store.load_for_search()
        want = {}
        for q in range(len(queries)):
            s = flat.vectors.astype(np.float64) @ queries[q].astype(np.float64)
            best = np.lexsort((flat.ids, -s))[:5]
            want[q] = (flat.ids[best].tolist(), np.round(s[best], 6).tolist())
    assert got == want


def test_the_service_lists_new_pairs_through_the_ivf(tmp_path: Path, small_ivf: None) -> None:
    import httpx
    from test_serve_hardening import serving

    from imgsim_index.serve.service import IndexService, ServeSettings

    index, x, _, first = ivf_index(tmp_path, 3000, 12, 0)
    x2, planted = clustered(200, 13, 20, start=3000, old=x)
    add(index, x2, 3000, tmp_path)
    want = {p for p in pairs_of(index) if {p[0], p[1]} & {path(k) for k in range(3000, 3200)}}
    service = IndexService(ServeSettings(index=str(index), output=str(tmp_path / "out")))
    assert service.large()
    with serving(service) as url:
        got = httpx.get(url + "/v1/pairs", params={"threshold": 0.85,
                                                    "since": first.covered_seq}, timeout=60)
    assert got.status_code == 200, got.text
    listed = {(*sorted((p["image1"], p["image2"])), p["similarity_score"])
              for p in got.json()["pairs"]}
    assert listed == want and len(want) >= 20


def test_the_ivf_scan_on_ray_equals_the_local_scan(tmp_path: Path, small_ivf: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The same pairs; each scan task asks Ray for the memory its list cache and process
    hold (so a node runs no more of them than its memory holds), never more than a node
    has."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install '.[ray]'")
    from imgsim_index.pipeline.ray_engine import RAY_TASK_OVERHEAD, RayEngine
    from imgsim_index.search import ray_shards

    asked: list[tuple[int, int]] = []
    real = ray_shards.ray_ivf_candidates

    def spy(*args: object) -> tuple[np.ndarray, np.ndarray]:
        asked.append((int(args[5]), int(args[-1])))  # type: ignore[call-overload]
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(ray_shards, "ray_ivf_candidates", spy)

    index = tmp_path / "index"
    x, _ = clustered(20_000, 14, 60)
    add(index, x, 0, tmp_path)
    s = DedupeSettings(pairs=PairSettings(threshold=0.85))
    local = find_duplicates(str(index), settings=s)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             object_store_memory=300 * 2**20, logging_level="WARNING")
    try:
        with RayEngine() as engine:
            on_ray = find_duplicates(str(index), settings=s, engine=engine)
    finally:
        ray.shutdown()
    assert on_ray.search.engine == "ray" and local.search.engine == "local"
    assert on_ray.pair_paths() == local.pair_paths() and len(local.pairs) >= 60
    (cache, memory), = asked
    assert 0 < memory <= cache + RAY_TASK_OVERHEAD


def test_new_data_far_from_the_cells_retrains_them(tmp_path: Path, small_ivf: None) -> None:
    index, _, _, first = ivf_index(tmp_path, 4000, 15, 0)
    # a new camera: 1,500 vectors around one direction no cell was trained on
    rng = np.random.default_rng(16)
    centre = rng.standard_normal(DIM)
    y = centre + 0.3 * rng.standard_normal((1500, DIM))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    add(index, y.astype(np.float32), 4000, tmp_path)
    after = ivf.read_manifest(str(index))
    assert after is not None and after.coarse != first.coarse  # trained again
    assert after.trained_on == 5500 and len(after.parts) == 1
    assert ivf.imbalance(ivf.list_sizes(str(index), after)) < ivf.RETRAIN_IMBALANCE * 1.5
    assert pairs_of(index) <= pairs_of(index, search="exact")


def near(v: np.ndarray, rng: np.random.Generator, t: float = 0.97) -> np.ndarray:
    """A unit vector at cosine `t` to unit `v`."""
    u = rng.standard_normal(len(v))
    u -= (u @ v) * v
    return (t * v + np.sqrt(1 - t * t) * u / np.linalg.norm(u)).astype(np.float32)


def brute_ids(index: Path, threshold: float, new_after: int | None = None
              ) -> set[tuple[int, int, float]]:
    """The exact pairs of catalog ids (numpy, float64), with a row committed after
    `new_after` when given."""
    from imgsim_index.search.threshold import meets_threshold

    with IndexStore.open_reader(str(index)) as store, store.snapshot():
        flat = store.load_for_search()
        seq = dict(store.catalog.db.execute(
            "SELECT id, seq FROM images WHERE status = 'embedded'").fetchall())
    x = flat.vectors.astype(np.float64)
    s = x @ x.T
    i, j = np.nonzero(np.triu(meets_threshold(s, threshold), 1))
    out = set()
    for a, b, sc in zip(flat.ids[i].tolist(), flat.ids[j].tolist(), s[i, j].tolist(),
                        strict=True):
        if new_after is None or max(seq[a], seq[b]) > new_after:
            out.add((min(a, b), max(a, b), round(sc, 6)))
    return out


def ivf_ids(index: Path, threshold: float, **kw: object) -> set[tuple[int, int, float]]:
    """ivf_pairs as a reader calls it (no IVF update first)."""
    from imgsim_index.search.ivf_search import ivf_pairs

    with IndexStore.open_reader(str(index)) as store, store.snapshot():
        manifest = ivf.read_manifest(str(index))
        assert manifest is not None
        found, _ = ivf_pairs(store.folder, store.catalog, manifest, threshold,
                             **kw)  # type: ignore[arg-type]
    return {(int(a), int(b), float(s)) for a, b, s in zip(found.a, found.b, found.score,
                                                         strict=True)}


def test_rows_not_yet_filed_into_the_ivf_are_searched(tmp_path: Path, small_ivf: None) -> None:
    """Rows committed after the IVF's last update (a writer stopped before filing them):
    new rows near old ones, new rows near each other, changed rows; a whole search, a
    new-only search and the service's listing give the brute force's pairs."""
    from imgsim_index.serve.service import IndexService, ServeSettings

    index, x, _, first = ivf_index(tmp_path, 3000, 17, 0)
    rng = np.random.default_rng(18)
    twins = [v for b in clustered(25, 19, 0)[0] for v in (b, near(b, rng))]
    new = np.stack([near(x[k], rng) for k in range(40)] + twins)
    changed = np.stack([near(x[2000 + k], rng) for k in range(10)])  # rows 100..109
    with pytest.MonkeyPatch.context() as m:  # committed, not filed
        m.setattr(IndexStore, "update_ivf", lambda self, *a, **k: None)
        add(index, new, 3000, tmp_path)
        add(index, changed, 100, tmp_path)
    manifest = ivf.read_manifest(str(index))
    assert manifest is not None and manifest.covered_seq == first.covered_seq
    whole = brute_ids(index, 0.9)
    since = brute_ids(index, 0.9, new_after=first.covered_seq)
    assert len(since) >= 40 + 25 + 10
    assert ivf_ids(index, 0.9) == whole
    assert ivf_ids(index, 0.9, new_after=first.covered_seq) == since
    service = IndexService(ServeSettings(index=str(index), output=str(tmp_path / "out")))
    listing = service.new_pairs(first.covered_seq, 0.9, page_size=1000, verify=False)
    assert listing.total == len(since)


def test_too_many_rows_not_yet_filed_is_one_line(tmp_path: Path, small_ivf: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from imgsim_index.errors import IndexFormatError
    from imgsim_index.search import ivf_search

    index, x, _, _ = ivf_index(tmp_path, 1000, 20, 0)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(IndexStore, "update_ivf", lambda self, *a, **k: None)
        add(index, x[:30], 1000, tmp_path)
    monkeypatch.setattr(ivf_search, "PENDING_MAX", 20)
    with pytest.raises(IndexFormatError, match="30 rows are not in the IVF yet.*verify --repair"):
        ivf_ids(index, 0.9)


def test_a_writer_merging_parts_during_a_dedupe_loses_no_pair(
        tmp_path: Path, small_ivf: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer changes rows and merges the IVF's parts right after a dedupe took its
    catalog snapshot: the dedupe finds its snapshot's pairs (the IVF it reads is never
    newer than the snapshot; the merge deletes files it holds open)."""
    from imgsim_index.pipeline.large import search_ivf
    from imgsim_index.search import ApproxSettings

    index = tmp_path / "index"
    rng = np.random.default_rng(21)
    x, _ = clustered(2000, 22, 0)
    x[1000:1020] = np.stack([near(x[k], rng) for k in range(20)])  # rows 0..19 have copies
    add(index, x, 0, tmp_path)
    for k in range(7):
        add(index, clustered(10, 23 + k, 0)[0], 2000 + 10 * k, tmp_path)
    assert len(ivf.read_manifest(str(index)).parts) == ivf.MAX_PARTS  # type: ignore[union-attr]
    want = brute_ids(index, 0.9)
    assert len(want) >= 20
    snapshot = IndexStore.snapshot
    writes = []

    @contextlib.contextmanager
    def then_a_writer(self: IndexStore) -> Iterator[None]:
        with snapshot(self):
            self.catalog.last_seq()  # the read transaction starts here
            if not writes:  # rows 0..19 get new vectors: a ninth part, 4 parts merged
                writes.append(1)
                add(index, clustered(20, 40, 0)[0], 0, tmp_path)
            yield

    monkeypatch.setattr(IndexStore, "snapshot", then_a_writer)
    got = search_ivf(str(index), None, 0.9, ApproxSettings(), None, None, None, None)
    assert len(ivf.read_manifest(str(index)).parts) == (  # type: ignore[union-attr]
        ivf.MAX_PARTS + 1 - ivf.MERGE_PARTS + 1)
    ids = [r.id for r in got.rows]
    assert {(ids[i], ids[j], float(s)) for i, j, s in zip(
        got.candidates.i.tolist(), got.candidates.j.tolist(), got.candidates.score.tolist(),
        strict=True)} == want


def test_opening_the_ivf_reads_ivf_json_again_when_a_merge_removed_its_parts(
        tmp_path: Path, small_ivf: None, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "index"
    x, _ = clustered(1000, 24, 0)
    add(index, x[:600], 0, tmp_path)
    add(index, x[600:], 600, tmp_path)
    old = ivf.read_manifest(str(index))
    assert old is not None and len(old.parts) == 2
    with IndexStore.open_updater(str(index)) as store:
        store.remove_paths([path(k) for k in range(500)])  # stale: the next writer merges
    add(index, x[500:501], 1000, tmp_path)
    new = ivf.read_manifest(str(index))
    assert new is not None and len(new.parts) == 1 and new.parts[0].name not in {
        p.name for p in old.parts}
    assert not (index / "ivf" / f"{old.parts[0].name}.npz").exists()
    reads = [old]  # the first read sees ivf.json as it was before the merge
    read = ivf.read_manifest
    monkeypatch.setattr(ivf, "read_manifest", lambda folder: reads.pop() if reads
                        else read(folder))
    with ivf.open_ivf(str(index)) as opened:
        assert opened.manifest == new and len(opened.readers) == 1


def test_new_only_probes_with_the_stored_probes_of_the_rows_the_ivf_holds(
        tmp_path: Path, small_ivf: None) -> None:
    """A new part whose stored probes (past the home cell) differ from what FAISS computes
    for the same vectors now (near-ties decided otherwise, here made large): new-only
    probes what the whole scan probes, so it finds exactly the whole scan's pairs with a
    new row."""
    index, x, _, _ = ivf_index(tmp_path, 5000, 25, 0)
    d = find_duplicates(str(index), settings=DedupeSettings(pairs=PairSettings(threshold=0.85)))
    IndexStore.record_dedupe(str(index), d.snapshot_seq)
    x2, _ = clustered(400, 26, 40, start=5000, old=x)
    add(index, x2, 5000, tmp_path)
    manifest = ivf.read_manifest(str(index))
    assert manifest is not None and len(manifest.parts) == 2
    part = manifest.parts[1]
    coarse = ivf.load_coarse(str(index), manifest)
    cat = Catalog(str(index / "catalog.sqlite"), readonly=True)
    row_of = {r.id: k for k in range(5000, 5400) if (r := cat.row_of(path(k))) is not None}
    cat.close()
    with ivf.open_parts(str(index), replace(manifest, parts=(part,))) as (reader,):
        stored = [(c, reader.list_entries(c)[0]) for c in range(manifest.nlist)]
        p = reader.nprobes
    rewritten = []
    for _, ids in stored:  # home kept; the other probes: cells FAISS ranks p..2p-2
        near_cells = coarse.probes(x2[[row_of[int(i)] - 5000 for i in ids]], 2 * p - 1)
        rewritten.append(np.concatenate([near_cells[:, :1], near_cells[:, p:]], axis=1))
    (index / "ivf" / f"{part.name}.probes").write_bytes(
        np.concatenate(rewritten).astype("<i4").tobytes())
    new = {path(k) for k in range(5000, 5400)}
    whole = pairs_of(index)
    new_only = pairs_of(index, new_only=True)
    assert new_only == {p for p in whole if p[0] in new or p[1] in new}
    assert len(new_only) >= 20


def test_frames_imported_a_few_at_a_time_never_rewrite_the_base(tmp_path: Path,
                                                                 small_ivf: None) -> None:
    """CCTV: frames imported 20 at a time. Past 16 vector files the smallest segments are
    merged into one, past 8 IVF parts the 4 adjacent ones holding the least: neither the
    compacted base nor the IVF's first part is ever rewritten (an import costs what it
    adds), and the pairs stay those of the exact search, new-only ones included."""
    from imgsim_index.index.store import BASE, MAX_SEGMENTS

    index, x, _, first = ivf_index(tmp_path, 3000, 41, 0)
    base = (index / BASE).stat()
    big = [(index / "ivf" / f).stat() for f in ivf.part_files(first.parts[0].name)]
    every, planted = x, []
    for k in range(MAX_SEGMENTS + 4):
        xk, pk = clustered(20, 100 + k, 3, start=len(every), old=every)
        add(index, xk, len(every), tmp_path)
        every, planted = np.concatenate([every, xk]), planted + pk
        if k == 3:  # a frame filed again with another vector: a stale entry in a small part
            add(index, every[3040:3041] * -1.0, 3040, tmp_path)
            every[3040] *= -1.0
        if k == MAX_SEGMENTS:
            d = find_duplicates(str(index), settings=DedupeSettings(
                pairs=PairSettings(threshold=0.85)))
            IndexStore.record_dedupe(str(index), d.snapshot_seq)
            new = {path(i) for i in range(len(every), len(every) + 60)}
    with IndexStore.open_reader(str(index)) as store:
        segs = store.catalog.segments()
    assert len(segs) <= MAX_SEGMENTS and any(n.endswith("-0.faiss") for n in segs)
    st = (index / BASE).stat()
    assert (st.st_ino, st.st_mtime_ns) == (base.st_ino, base.st_mtime_ns)
    manifest = ivf.read_manifest(str(index))
    assert manifest is not None and len(manifest.parts) <= ivf.MAX_PARTS
    assert manifest.parts[0].name == first.parts[0].name and manifest.count == len(every)
    assert [(index / "ivf" / f).stat().st_mtime_ns
            for f in ivf.part_files(first.parts[0].name)] == [s.st_mtime_ns for s in big]
    whole = pairs_of(index)
    assert pairs_of(index, new_only=True) == {p for p in whole if p[0] in new or p[1] in new}
    assert whole <= pairs_of(index, search="exact")
    assert {tuple(sorted((path(a), path(b)))) for a, b in planted} <= {(a, b)
                                                                        for a, b, _ in whole}
    assert not verify_index(str(index)).problems


def test_new_only_reads_only_the_new_rows_vectors_after_a_compaction(
        tmp_path: Path, small_ivf: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a compaction the new rows sit in the one vector file with every other row:
    a new-only search reads them by position, not the whole file."""
    from imgsim_index.index import vector_file
    from imgsim_index.index.ivf_sync import VectorLookup

    index, x, _, first = ivf_index(tmp_path, 5000, 27, 0)
    x2, _ = clustered(20, 28, 10, start=5000, old=x)
    np.save(tmp_path / "y.npy", x2)
    (tmp_path / "y.paths").write_text("".join(path(k) + "\n" for k in range(5000, 5020)))
    import_vectors(str(tmp_path / "y.npy"), str(tmp_path / "y.paths"), str(index),
                   ImportSettings(compact=True))
    with IndexStore.open_reader(str(index)) as store:
        assert len(store.catalog.segments()) == 1
    want = brute_ids(index, 0.9, new_after=first.covered_seq)
    read = {"rows": 0}
    file_read, lookup_read = vector_file.VectorFile.read, VectorLookup.read

    def counted_file(self: vector_file.VectorFile, a: int, b: int) -> np.ndarray:
        out = file_read(self, a, b)
        read["rows"] += len(out)
        return out

    def counted_lookup(self: VectorLookup, ids: np.ndarray) -> np.ndarray:
        read["rows"] += len(ids)
        return lookup_read(self, ids)

    monkeypatch.setattr(vector_file.VectorFile, "read", counted_file)
    monkeypatch.setattr(VectorLookup, "read", counted_lookup)
    got = ivf_ids(index, 0.9, new_after=first.covered_seq)
    assert read["rows"] < 500  # the 20 new rows, and the candidates' rows to rescore
    assert got == want and len(got) >= 10


def test_a_dedupe_whose_vector_files_a_writer_merges_meanwhile_runs_again(
        tmp_path: Path, small_ivf: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer merges the small vector files right after a dedupe's scan, before it reads
    its pairs' vectors by the file names of its snapshot: the search runs again from a new
    snapshot and finds the exact pairs of the index as it now is (no FileNotFoundError)."""
    import imgsim_index.pipeline.large as large
    from imgsim_index.index.store import MAX_SEGMENTS

    index, x, _, _ = ivf_index(tmp_path, 2000, 51, 0)
    every = x
    for k in range(MAX_SEGMENTS - 1):  # 15 segments with copies of old rows, and the base
        xk, _ = clustered(10, 60 + k, 2, start=len(every), old=every)
        add(index, xk, len(every), tmp_path)
        every = np.concatenate([every, xk])
    real, calls = large.ivf_pairs, []

    def then_a_writer(*args: object, **kw: object) -> object:
        got = real(*args, **kw)  # type: ignore[arg-type]
        calls.append(1)
        if len(calls) == 1:  # the 17th file: the 8 smallest segments are merged
            xk, _ = clustered(10, 99, 2, start=len(every), old=every)
            add(index, xk, len(every), tmp_path)
        return got

    monkeypatch.setattr(large, "ivf_pairs", then_a_writer)
    got = pairs_of(index)
    assert len(calls) == 2
    monkeypatch.setattr(large, "ivf_pairs", real)
    assert got == pairs_of(index) and got <= pairs_of(index, search="exact")
    assert len(got) >= 30
