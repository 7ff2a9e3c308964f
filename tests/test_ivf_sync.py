"""The on-disk IVF follows every catalog change (index/ivf_sync.py): rows put back by undo
are filed again, removals are seen by kept searchers, verify checks every file of a part,
large ids; brute force numpy is the ground truth. Indexes are made small by lowering
ivf.IVF_ABOVE (the small_ivf fixture of test_ivf)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_ivf import add, clustered, ivf_index, pairs_of, path, small_ivf

from imgsim_index.actions.index_sync import sync_index
from imgsim_index.actions.journal import Journal
from imgsim_index.index import ivf
from imgsim_index.index.check import verify_index
from imgsim_index.index.store import IndexStore

__all__ = ["small_ivf"]  # the fixture, used by name


def set_aside_then_merge(tmp: Path) -> tuple[Path, list[tuple[int, int]]]:
    """An IVF index and a small import of copies of its rows (the rows b of the pairs),
    which apply hard-linked to their originals (set aside as aliases), then enough
    checkpoints for the IVF to merge its small parts, dropping the set-aside rows'
    entries as stale."""
    index, x, _, first = ivf_index(tmp, 2000, 20, 0)
    copies, planted = clustered(10, 21, 10, start=2000, old=x)
    add(index, copies, 2000, tmp)
    with IndexStore.open_updater(str(index)) as store, store.catalog.transaction():
        for a, b in planted:
            assert store.catalog.set_alias(path(b), path(a))
    for k in range(ivf.MAX_PARTS):
        add(index, clustered(10, 22 + k, 0)[0], 2010 + 10 * k, tmp)
    manifest = ivf.read_manifest(str(index))
    assert manifest is not None and len(manifest.parts) < ivf.MAX_PARTS  # merged
    assert manifest.parts[0] == first.parts[0]  # the large first part was left as it was
    assert manifest.count == 2000 + 10 * ivf.MAX_PARTS  # the copies' entries dropped
    return index, planted


def undo_links(tmp: Path, index: Path, planted: list[tuple[int, int]]) -> None:
    """Undo's index update for apply's hard links of the planted copies."""
    with Journal.create(str(tmp / "j.jsonl"), {"index": str(index)}) as journal:
        for n, (a, b) in enumerate(planted, 1):
            journal.append({"type": "begin", "n": n, "action": "hardlink", "path": path(b),
                            "keeper": path(a)})
            journal.append({"type": "done", "n": n})
            journal.append({"type": "undone", "n": n})
        assert sync_index(journal, undoing=True).relinked == len(planted)


def test_rows_put_back_by_undo_are_searched_again_after_a_merge(tmp_path: Path,
                                                                small_ivf: None) -> None:
    index, planted = set_aside_then_merge(tmp_path)
    undo_links(tmp_path, index, planted)
    got = pairs_of(index)
    assert got == pairs_of(index, search="exact")
    assert {tuple(sorted((path(a), path(b)))) for a, b in planted} <= {(a, b) for a, b, _ in got}
    assert verify_index(str(index)).ok


def test_a_writer_files_covered_rows_the_ivf_holds_no_entry_of(tmp_path: Path,
                                                                small_ivf: None) -> None:
    """Rows put back with their old commit (as undo once did) are named by verify and filed
    by `verify --repair` (a writer's update counts stale entries, it does not read them)."""
    index, planted = set_aside_then_merge(tmp_path)
    undo_links(tmp_path, index, planted)
    with IndexStore.open_updater(str(index)) as store, store.catalog.transaction():
        store.catalog.db.executemany("UPDATE images SET seq = 1 WHERE path = ?",
                                     [(path(b),) for _, b in planted])  # the import's commit
    assert any("lacks 10 embedded rows" in p for p in verify_index(str(index)).problems)
    assert verify_index(str(index), repair=True).repaired
    assert verify_index(str(index)).ok
    got = pairs_of(index)
    assert got == pairs_of(index, search="exact")
    assert {tuple(sorted((path(a), path(b)))) for a, b in planted} <= {(a, b) for a, b, _ in got}


def test_the_service_never_answers_with_a_removed_row(tmp_path: Path, small_ivf: None) -> None:
    """serve keeps its IVF searcher per commit: a removal (store.remove_paths, apply's
    delete) is a commit, so the next query sees it (no removed row, no damage error)."""
    from imgsim_index.pipeline.query import _search_stored
    from imgsim_index.serve.service import IndexService, ServeSettings

    index, x, _, _ = ivf_index(tmp_path, 1000, 22, 0)
    service = IndexService(ServeSettings(index=str(index), output=str(tmp_path / "out")))
    ok = np.ones(2, bool)

    def top1(rows: list[int]) -> list[int]:
        with IndexStore.open_reader(str(index)) as store:
            got = _search_stored(store, x[rows], ok, 1, searcher=service.ivf_searcher())
            ids = [got[q][0][0] for q in range(len(rows))]
            assert len(store.catalog.rows_by_id(ids)) == len(set(ids))  # every hit a row
        return ids

    first = top1([7, 8])
    with IndexStore.open_updater(str(index)) as store:
        store.remove_paths([path(7)])
    assert first[0] not in top1([7, 8])
    with Journal.create(str(tmp_path / "d.jsonl"), {"index": str(index)}) as journal:
        journal.append({"type": "begin", "n": 1, "action": "delete", "path": path(8)})
        journal.append({"type": "done", "n": 1})
        assert sync_index(journal).removed == 1
    assert not set(top1([7, 8])) & set(first)


def _truncate_probes(base: Path) -> None:
    probes = base.with_suffix(".probes")
    os.truncate(probes, probes.stat().st_size // 2)


def _npz(**change: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    def damage(base: Path) -> None:
        npz = base.with_suffix(".npz")
        with np.load(npz) as meta:
            arrays = {k: change[k](meta[k]) if k in change else meta[k] for k in meta.files}
        with open(npz, "wb") as fh:
            np.savez(fh, **arrays)
    return damage


@pytest.mark.parametrize("damage", [
    _truncate_probes,
    _npz(offsets=lambda o: o + 8),
    _npz(maxerr=lambda e: e[:-1]),
    _npz(sizes=lambda s: np.concatenate([s[:-2], [s[-2] + s[-1], 0]])),
], ids=["probes-truncated", "offsets", "maxerr-shape", "sizes"])
def test_verify_finds_any_damaged_file_of_a_part_and_repair_rebuilds_it(
        tmp_path: Path, small_ivf: None, damage: Callable[[Path], None]) -> None:
    index, _, _, manifest = ivf_index(tmp_path, 1000, 23, 10)
    damage(index / "ivf" / manifest.parts[0].name)
    report = verify_index(str(index))
    assert any(f"IVF part {manifest.parts[0].name}" in p for p in report.problems), report
    fixed = verify_index(str(index), repair=True)
    assert any("rebuilt the on-disk IVF" in r for r in fixed.repaired)
    assert verify_index(str(index)).ok
    assert pairs_of(index) == pairs_of(index, search="exact")


def test_pairs_and_commit_order_hold_for_ids_past_32_bits() -> None:
    from imgsim_index.search.ivf_scan import unique_pairs

    u = np.array([2**31 + 5, 7, 2**32 + 3, 2**31 + 9, 2**40], np.int64)
    v = np.array([2**31 + 9, 2**32 + 1, 11, 2**31 + 5, 3], np.int64)
    a, b = unique_pairs(u, v)
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [
        (3, 2**40), (7, 2**32 + 1), (11, 2**32 + 3), (2**31 + 5, 2**31 + 9)]
    # a row's key orders (commit, id): a later commit is later whatever the ids
    from imgsim_index.index.ivf_sync import RowKeys

    keys = RowKeys.of(np.array([2**33, 5, 2**40], np.int64), np.array([4, 5, 4], np.int64))
    ordered = keys.key(np.array([2**33, 2**40, 5], np.int64))
    assert ordered.tolist() == sorted(ordered.tolist())


def test_row_keys_follow_the_live_rows_not_the_ids_ever_issued(tmp_path: Path,
                                                                small_ivf: None) -> None:
    """A rolling index (old rows removed, new ones added, ids never reused): the row keys
    of a search hold the live rows only, and the pairs stay exact."""
    import sqlite3

    from imgsim_index.index.ivf_sync import row_keys

    index, _, _, _ = ivf_index(tmp_path, 1000, 24, 0)
    db = sqlite3.connect(str(index / "catalog.sqlite"))
    db.execute("UPDATE sqlite_sequence SET seq = 3000000000 WHERE name = 'images'")
    db.commit()
    db.close()
    x, planted = clustered(1000, 25, 10)
    add(index, x, 1000, tmp_path)
    with IndexStore.open_updater(str(index)) as store:
        store.remove_paths([path(k) for k in range(1000)])
        store.update_ivf()
    with IndexStore.open_reader(str(index)) as store:
        keys = row_keys(store.catalog)
        assert keys.count == 1000 and keys.ids.min() > 3_000_000_000
        assert keys.ids.nbytes + keys.seqs.nbytes + keys.ranks.nbytes == 24 * 1000
    got = pairs_of(index)
    assert got == pairs_of(index, search="exact") and len(got) >= 10
    assert verify_index(str(index)).ok


def test_a_stream_of_small_parts_is_merged_about_log_n_times_per_entry() -> None:
    """The window rule on a stream of 3,000 parts of one entry after a first part of 1,000:
    windows of like-sized parts are merged, so each entry is rewritten a few times (not
    once per merge: the rule that merged the 4 smallest adjacent parts, however unequal,
    rewrote the growing last part every third update), and the first part only once the
    others together outgrow it."""
    from imgsim_index.index.ivf_sync import merge_window

    parts, written, first_rewritten_at = [1000], 0, None
    for t in range(3000):
        parts.append(1)
        if len(parts) > ivf.MAX_PARTS:
            at = merge_window(parts, ivf.MERGE_PARTS)
            if at == 0 and first_rewritten_at is None:
                first_rewritten_at = t
                assert sum(parts[1:ivf.MERGE_PARTS]) >= 1000
            merged = sum(parts[at:at + ivf.MERGE_PARTS])
            written += merged
            parts[at:at + ivf.MERGE_PARTS] = [merged]
    assert written / 3000 < 12 and len(parts) <= ivf.MAX_PARTS
    assert first_rewritten_at is not None and first_rewritten_at > 900
