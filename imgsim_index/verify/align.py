"""Alignment: the ways of finding a map between two images, tried in order until one passes.

STRATEGIES is the order, cheapest first; align() runs them in one loop over an Alignment
(the pair, the maps checked so far and the numbers found), stopping at the first map whose
check (check.check_map) says copy. Each strategy says when it is wanted, from what the
earlier ones found:

1. sketch: the dihedral transforms (mirror x rot90) of the 32x32 content-box sketches,
   the best-correlated two. Exact, mirrored, rotated, resized, bordered copies and a
   picture resized without keeping its aspect align here, in microseconds. Where the
   whole frames' map is within FRAME_SNAP_PX of the boxes' map (a margin's edge that
   re-encoding moved by a row), it is checked too when the boxes' map fails.
2. ecc of the sketch map: when a sketch map was checked and failed, ECC refines the best
   one densely on 128 px thumbnails (about a millisecond): a copy turned or cropped
   slightly aligns here. When ECC leaves the map in place the alignment is confirmed: the
   pictures disagree, and keypoints would find the same map, so they are not computed.
3. ecc from the boxes: when the sketches agree too little to check their map (a turn
   filled the corners, a crop moved the content), ECC refines it; kept only when it passes.
4. keypoints: SIFT + RANSAC restricted to a similarity; the mirror image's keypoints too
   when the direct ones find no map or the sketches say mirrored.
5. template: when keypoints found no map (smooth pictures), one content box searched in
   the other, shrunk by up to 20% per axis.
6. ecc of the best map: still without keypoints, the best map so far refined by ECC (the
   box maps cannot rotate; a copy turned by a few degrees needs this).
7. local tone: no map passed with one tone curve for the whole picture; the best maps are
   checked again with tone curves per tile (a vignette, CLAHE, detail enhancement). Last,
   so local curves never stand in for a better map; not for a map that failed only on a
   small change (check.small_change_only: curves fitted around it could only hide it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from imgsim_index.verify.check import (
    Blurs,
    Check,
    Prepared,
    check_map,
    coarse_check,
    detail_differs,
    full_check,
    small_change_only,
)
from imgsim_index.verify.features import Features
from imgsim_index.verify.geometry import (
    MIRRORED,
    dihedral,
    dihedral_matrix,
    flip_matrix,
    map_shift,
    match_keypoints,
    refine_ecc,
    template,
)
from imgsim_index.verify.residual import Local
from imgsim_index.verify.settings import (
    FRAME_SNAP_PX,
    SKETCH_ASPECT_LOG_TOL,
    SKETCH_MAPS,
    MatchSettings,
)


@dataclass
class Tried:
    """A map that was checked: its check, the map (b px -> a px) and the strategy's name."""

    check: Check
    map: np.ndarray
    source: str


@dataclass
class Alignment:
    """One pair's search for a map: what the strategies share."""

    a: Features
    b: Features
    settings: MatchSettings
    ncc: list[float] = field(init=False)  # sketch correlation per dihedral transform
    order: list[int] = field(init=False)  # the transforms, best-correlated first
    numbers: dict[str, float] = field(init=False)  # found on the way (inliers, ...)
    tried: list[Tried] = field(default_factory=list)
    # the maps ECC started from (their bytes) -> (ECC's shift of each in px, the refined
    # map when it moved by more than ecc_confirm_px); (None, None): ECC failed
    refined: dict[bytes, tuple[float | None, np.ndarray | None]] = field(default_factory=dict)
    # ECC left the best sketch map in place: the alignment is right, the pictures differ
    confirmed: bool = False
    keypoints_failed: bool = False  # keypoint matching ran and found no map
    blurs: Blurs = field(default_factory=dict)
    # the judgements the best-scoring map's checks prepared (its local check reuses them)
    prepared: dict[bytes, Prepared] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ncc = [float((self.a.sketch * dihedral(self.b.sketch, k)).sum())
                    for k in range(8)]
        self.order = sorted(range(8), key=lambda k: -self.ncc[k])
        self.numbers = {"sketch_ncc": self.ncc[self.best_k]}

    @property
    def best_k(self) -> int:
        return self.order[0]

    def check(self, m: np.ndarray, source: str, local: Local = "",
              keep: bool = True) -> Check:
        """Check map m; keep it among the tried maps when `keep`, or when it passes."""
        chk = check_map(self.a, self.b, m, self.settings, self.blurs, local,
                        self.prepared.setdefault(m.tobytes(), {}))
        return self._record(chk, m, source, keep)

    def settle(self, m: np.ndarray, source: str) -> Check | None:
        """check(m) when the coarse sizes settle it, else None (finish() checks it then)."""
        chk = coarse_check(self.a, self.b, m, self.settings, self.blurs, "",
                           self.prepared.setdefault(m.tobytes(), {}))
        return None if chk is None else self._record(chk, m, source, True)

    def finish(self, m: np.ndarray, source: str) -> Check:
        """check(m) at full size, for a map the coarse sizes did not settle (settle())."""
        chk = full_check(self.a, self.b, m, self.settings, self.blurs, "",
                         self.prepared.setdefault(m.tobytes(), {}))
        return self._record(chk, m, source, True)

    def refine(self, m: np.ndarray) -> tuple[float | None, np.ndarray | None]:
        """(ECC's shift of map m in px or None where ECC failed, the refined map where it
        moved m by more than ecc_confirm_px); computed once per map (refined)."""
        key = m.tobytes()
        if key not in self.refined:
            refined = refine_ecc(self.a, self.b, m)
            shift = None if refined is None else map_shift(m, refined, self.b.box)
            moved = shift is not None and shift > self.settings.ecc_confirm_px
            self.refined[key] = (shift, refined if moved else None)
            if shift is not None:
                self.numbers["ecc_shift_px"] = shift
        return self.refined[key]

    def _record(self, chk: Check, m: np.ndarray, source: str, keep: bool) -> Check:
        if chk.copy:  # whichever size passed it, the fine detail must agree
            chk = detail_differs(self.a, self.b, m, chk)
        if keep or chk.copy:
            self.tried.append(Tried(chk, m, source))
        best = self.best_scoring().map.tobytes() if self.tried else None
        self.prepared = {best: self.prepared[best]} if best in self.prepared else {}
        return chk

    def found_copy(self) -> bool:
        return any(t.check.copy for t in self.tried)

    def best_scoring(self) -> Tried:
        return max(self.tried, key=lambda t: t.check.score)


class Strategy(Protocol):
    def wanted(self, s: Alignment) -> bool: ...
    def run(self, s: Alignment) -> None: ...


class SketchMaps:
    def wanted(self, s: Alignment) -> bool:
        return True

    def run(self, s: Alignment) -> None:
        a, b = s.a.box, s.b.box
        aspect_a = (a[2] - a[0]) / (a[3] - a[1])
        for k in s.order[:SKETCH_MAPS]:
            if s.ncc[k] < s.settings.sketch_ncc:
                break
            w, h = b[2] - b[0], b[3] - b[1]
            aspect_b = (h / w) if k % 2 else (w / h)  # odd k: turned by 90 deg
            tol = max(SKETCH_ASPECT_LOG_TOL, np.log(s.settings.max_squash))
            if abs(np.log(aspect_a / aspect_b)) >= tol:
                continue
            m = dihedral_matrix(k, a, b)
            if self._passes(s, m):
                break
            frames = dihedral_matrix(k, _frame(s.a), _frame(s.b))
            if 0.25 < map_shift(m, frames, b) <= FRAME_SNAP_PX and self._passes(s, frames):
                break

    @staticmethod
    def _passes(s: Alignment, m: np.ndarray) -> bool:
        chk = s.settle(m, "sketch")
        if chk is None:  # not settled at the coarse sizes: the full size decides
            # the best-correlated map ECC moves is a copy turned or cropped a little (the
            # sketch map's full check would fail: ECC would run next), whose refined map
            # passes; the sketch map then is not checked at full size
            if not s.tried and (refined := s.refine(m)[1]) is not None and s.check(
                    refined, "ecc").copy:
                return True
            chk = s.finish(m, "sketch")
        return chk.copy


def _frame(f: Features) -> tuple[int, int, int, int]:
    h, w = f.grey.shape
    return 0, 0, w, h


def _sketch_tried(s: Alignment) -> list[Tried]:
    return [t for t in s.tried if t.source == "sketch"]


class EccOfSketchMap:
    def wanted(self, s: Alignment) -> bool:
        return bool(_sketch_tried(s))

    def run(self, s: Alignment) -> None:
        best = max(_sketch_tried(s), key=lambda t: t.check.score)
        before = best.map.tobytes() in s.refined  # refined (and checked) by SketchMaps
        shift, refined = s.refine(best.map)
        if shift is None:
            return
        if refined is not None and not before:
            s.check(refined, "ecc")
        s.confirmed = shift <= s.settings.ecc_confirm_px \
            and best.check.numbers.get("overlap", 0.0) >= s.settings.min_overlap


class EccFromBoxes:
    def wanted(self, s: Alignment) -> bool:
        return not s.tried and s.ncc[s.best_k] >= s.settings.ecc_start_ncc

    def run(self, s: Alignment) -> None:
        refined = refine_ecc(s.a, s.b, dihedral_matrix(s.best_k, s.a.box, s.b.box))
        if refined is not None:
            s.check(refined, "ecc", keep=False)  # keypoints decide unless it passes


class Keypoints:
    def wanted(self, s: Alignment) -> bool:
        return not s.confirmed

    def run(self, s: Alignment) -> None:
        kp_a, desc_a = s.a.keypoints(s.settings)
        m, inliers = match_keypoints(kp_a, desc_a, *s.b.keypoints(s.settings), s.settings)
        s.numbers["inliers"] = float(inliers)
        mirror = m is None or s.best_k >= MIRRORED
        if mirror:
            m_flip, n_flip = match_keypoints(
                kp_a, desc_a, *s.b.keypoints(s.settings, mirrored=True), s.settings)
            if m_flip is not None and (m is None or n_flip > inliers):
                m = (np.vstack([m_flip, [0, 0, 1]]) @ flip_matrix(s.b.grey.shape[1]))[:2]
                s.numbers["inliers"] = float(n_flip)
        s.numbers["tried_mirror"] = float(mirror)
        if m is None:
            s.keypoints_failed = True
        else:
            s.check(m, "sift")


class Template:
    def wanted(self, s: Alignment) -> bool:
        return s.keypoints_failed and s.ncc[s.best_k] >= s.settings.sketch_ncc

    def run(self, s: Alignment) -> None:
        score, m = template(s.a, s.b, s.best_k)
        s.numbers["template_ncc"] = score
        if score >= s.settings.sketch_ncc:
            s.check(m, "template")


class EccOfBestMap:
    def wanted(self, s: Alignment) -> bool:
        return s.keypoints_failed and bool(s.tried)

    def run(self, s: Alignment) -> None:
        best = s.best_scoring().map
        if best.tobytes() in s.refined:
            return
        refined = refine_ecc(s.a, s.b, best)
        if refined is not None:
            s.check(refined, "ecc")


class LocalTone:
    def wanted(self, s: Alignment) -> bool:
        return bool((s.settings.local_field or s.settings.local_tiles) and s.tried)

    def run(self, s: Alignment) -> None:
        # the best aligned by their global check (a keypoint map a fraction of a pixel off
        # can score above the exact box map), under every limit of the global check; the
        # smooth gain field first (fewer degrees of freedom), then the curves per tile
        ranked = sorted(s.tried, key=lambda t: -t.check.score)[:s.settings.local_maps]
        models: list[Local] = []
        if s.settings.local_field:
            models.append("field")
        if s.settings.local_tiles:
            models.append("tiles")
        for t in ranked:
            if t.check.numbers.get("hue_change_deg", -1.0) > s.settings.max_hue_deg:
                continue
            if small_change_only(t.check, s.settings):
                continue  # local curves would only hide what moved
            if any(s.check(t.map, t.source, local=m, keep=False).copy for m in models):
                break


STRATEGIES: tuple[Strategy, ...] = (SketchMaps(), EccOfSketchMap(), EccFromBoxes(),
                                    Keypoints(), Template(), EccOfBestMap(), LocalTone())


def align(a: Features, b: Features, settings: MatchSettings) -> Alignment:
    """The pair's maps, tried by STRATEGIES in order until one passes as a copy."""
    s = Alignment(a, b, settings)
    for strategy in STRATEGIES:
        if s.found_copy():
            break
        if strategy.wanted(s):
            strategy.run(s)
    return s
