"""Maps between two thumbnails: each a 2x3 matrix taking b's thumbnail px to a's.

The ways of finding one (align.py runs them): the 8 dihedral transforms of the content
boxes (dihedral_matrix), SIFT keypoints matched under a similarity with RANSAC
(match_keypoints), a template search of one content box in the other (template), and ECC
refinement of a map on small thumbnails (refine_ecc).
"""

from __future__ import annotations

import cv2
import numpy as np

from imgsim_index.verify.features import Features, resize_long
from imgsim_index.verify.settings import (
    ECC_EPS,
    ECC_GAUSS,
    ECC_ITERS,
    ECC_SIDE,
    RANSAC_CONFIDENCE,
    RANSAC_ITERS,
    RANSAC_REFINE_ITERS,
    RANSAC_SEED,
    TEMPLATE_MIN_PX,
    TEMPLATE_MIN_STD,
    TEMPLATE_PART_MIN_PX,
    TEMPLATE_SHRINKS,
    TEMPLATE_SIDE,
    MatchSettings,
)

Box = tuple[int, int, int, int]
MIRRORED = 4  # dihedral transforms 0..3 turn by k x 90 deg; 4..7 mirror first


def dihedral(s: np.ndarray, k: int) -> np.ndarray:
    t = np.fliplr(s) if k >= MIRRORED else s
    return np.rot90(t, k % MIRRORED)


def _unit_to_box(box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box  # pixel centres at integers: the box spans x0 - 0.5 .. x1 - 0.5
    return np.array([[x1 - x0, 0, x0 - 0.5], [0, y1 - y0, y0 - 0.5], [0, 0, 1]], np.float64)


def dihedral_matrix(k: int, box_a: Box,
                     box_b: Box) -> np.ndarray:
    """2x3 matrix mapping b thumbnail px to a thumbnail px for dihedral transform k."""
    n = 8
    v, u = np.mgrid[0:n, 0:n].astype(np.float64)
    u, v = (u + 0.5) / n, (v + 0.5) / n
    su, sv = dihedral(u, k), dihedral(v, k)  # at a position of the a frame: b's unit coords
    src = np.stack([u.ravel(), v.ravel(), np.ones(n * n)], 1)  # a unit coords
    sol, *_ = np.linalg.lstsq(src, np.stack([su.ravel(), sv.ravel()], 1), rcond=None)
    a_to_b = np.vstack([sol.T, [0, 0, 1]])  # a unit -> b unit
    b_to_a = _unit_to_box(box_a) @ np.linalg.inv(a_to_b) @ np.linalg.inv(_unit_to_box(box_b))
    return b_to_a[:2]


def match_keypoints(kp_a: np.ndarray, d_a: np.ndarray, kp_b: np.ndarray, d_b: np.ndarray,
           settings: MatchSettings) -> tuple[np.ndarray | None, int]:
    if len(d_a) < settings.min_inliers or len(d_b) < settings.min_inliers:
        return None, 0
    bf = cv2.BFMatcher(cv2.NORM_L2)
    pairs = bf.knnMatch(d_a.astype(np.float32), d_b.astype(np.float32), k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < settings.ratio * p[1].distance]
    if len(good) < settings.min_inliers:
        return None, len(good)
    pa = np.array([kp_a[m.queryIdx] for m in good], np.float32)
    pb = np.array([kp_b[m.trainIdx] for m in good], np.float32)
    cv2.setRNGSeed(RANSAC_SEED)
    m, inl = cv2.estimateAffinePartial2D(pb, pa, method=cv2.RANSAC,
                                         ransacReprojThreshold=settings.ransac_px,
                                         maxIters=RANSAC_ITERS, confidence=RANSAC_CONFIDENCE,
                                         refineIters=RANSAC_REFINE_ITERS)
    n = int(inl.sum()) if inl is not None else 0
    if m is None or n < settings.min_inliers:
        return None, n
    return m.astype(np.float64), n


def _template_fwd(a: Features, b: Features, k: int) -> tuple[float, np.ndarray]:
    """Find b's content (dihedral k, shrunk by 80-100% per axis) inside a's content box.

    Fallback for images with too few keypoints (smooth gradients): returns (ncc, b->a 2x3).
    """
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    f = TEMPLATE_SIDE / max(ax1 - ax0, ay1 - ay0)
    wa = max(TEMPLATE_MIN_PX, round((ax1 - ax0) * f))
    ha = max(TEMPLATE_MIN_PX, round((ay1 - ay0) * f))
    ga = cv2.resize(a.grey[ay0:ay1, ax0:ax1], (wa, ha), interpolation=cv2.INTER_AREA)
    gb = np.ascontiguousarray(dihedral(b.grey[by0:by1, bx0:bx1], k))
    best = (-1.0, np.zeros((2, 3)))
    for qx in TEMPLATE_SHRINKS:
        for qy in TEMPLATE_SHRINKS:
            tw = max(TEMPLATE_PART_MIN_PX, round(wa * qx))
            th = max(TEMPLATE_PART_MIN_PX, round(ha * qy))
            t = cv2.resize(gb, (tw, th), interpolation=cv2.INTER_AREA)
            if float(t.std()) < TEMPLATE_MIN_STD:
                continue
            r = cv2.matchTemplate(ga, t, cv2.TM_CCOEFF_NORMED)
            _, score, _, loc = cv2.minMaxLoc(r)
            if score > best[0]:
                sub = (ax0 + loc[0] / f, ay0 + loc[1] / f, ax0 + (loc[0] + tw) / f,
                       ay0 + (loc[1] + th) / f)
                best = (float(score), dihedral_matrix(k, sub, b.box))  # type: ignore[arg-type]
    return best


def template(a: Features, b: Features, k: int) -> tuple[float, np.ndarray]:
    s1, m1 = _template_fwd(a, b, k)
    s2, m2 = _template_fwd(b, a, k if k >= MIRRORED else (MIRRORED - k) % MIRRORED)
    if s2 > s1:
        return s2, np.linalg.inv(np.vstack([m2, [0, 0, 1]]))[:2]
    return s1, m1


def refine_ecc(a: Features, b: Features, m: np.ndarray) -> np.ndarray | None:
    """A b->a map refined (affine, intensity-invariant ECC) on grey thumbnails of at most
    ECC_SIDE px, starting from m; None when it does not converge."""
    f = min(1.0, ECC_SIDE / max(a.grey.shape + b.grey.shape))
    ga, gb = (resize_long(x.grey, round(max(x.grey.shape) * f)) for x in (a, b))
    sa = np.diag([ga.shape[1] / a.grey.shape[1], ga.shape[0] / a.grey.shape[0], 1.0])
    sb = np.diag([gb.shape[1] / b.grey.shape[1], gb.shape[0] / b.grey.shape[0], 1.0])
    a_to_b = sb @ np.linalg.inv(np.vstack([m, [0, 0, 1]])) @ np.linalg.inv(sa)
    x0, y0, x1, y1 = (round(v * f) for v in b.box)  # the mask is of the input image (b)
    mask = np.zeros(gb.shape, np.uint8)
    mask[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = 1
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERS, ECC_EPS)
    try:
        _, w = cv2.findTransformECC(ga, gb, a_to_b[:2].astype(np.float32), cv2.MOTION_AFFINE,
                                    crit, mask, ECC_GAUSS)
    except cv2.error:
        return None
    a_to_b_full = np.linalg.inv(sb) @ np.vstack([w.astype(np.float64), [0, 0, 1]]) @ sa
    b_to_a = np.linalg.inv(a_to_b_full)
    return b_to_a[:2]


# the eight linear parts of the dihedral transforms (right-angle turns, mirror first)
_DIHEDRAL_2X2 = [np.array(m, np.float64) for m in (
    [[1, 0], [0, 1]], [[0, -1], [1, 0]], [[-1, 0], [0, -1]], [[0, 1], [-1, 0]],
    [[-1, 0], [0, 1]], [[0, 1], [1, 0]], [[1, 0], [0, -1]], [[0, -1], [-1, 0]])]


def stretch(m: np.ndarray) -> tuple[float, float]:
    """(anisotropy, turn) of a 2x3 map's linear part: the ratio of its two scales along
    their own axes (1: the aspect kept), and the angle in degrees by which it turns the
    picture once the nearest right-angle turn or mirror is taken out (the rotation of its
    polar decomposition). A copy is squashed along its own axes, turned at any angle
    without being squashed, or both with a small turn (a skewed scan forced into a box);
    a large turn with a squash is no edit (a free affine map found on smooth pictures)."""
    lin = np.asarray(m, np.float64)[:, :2]
    u, sv, vt = np.linalg.svd(lin)
    anisotropy = float(sv[0] / max(sv[1], 1e-12))
    rot = u @ vt  # the rotation (or reflection) of the polar decomposition
    turn = min(_angle(d.T @ rot) for d in _DIHEDRAL_2X2)
    return anisotropy, turn


def _angle(r: np.ndarray) -> float:
    """The angle in degrees of a 2x2 rotation; 180 for a reflection."""
    if np.linalg.det(r) < 0:
        return 180.0
    return float(abs(np.degrees(np.arctan2(r[1, 0], r[0, 0]))))


def box_corners(box: Box) -> np.ndarray:
    """The 4 corners of a box (x0, y0, x1, y1), clockwise from the top left, as rows
    (x, y, 1)."""
    x0, y0, x1, y1 = box
    return np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], np.float64)


def map_shift(m1: np.ndarray, m2: np.ndarray, box: Box) -> float:
    """Largest distance (px) between where two b->a maps put the corners of b's box."""
    return float(np.max(np.hypot(*(box_corners(box) @ (m1 - m2).T).T)))


def flip_matrix(w: int) -> np.ndarray:
    return np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])



def centres(sx: float, sy: float) -> np.ndarray:
    """3x3 map from an image's px to a resized copy's (sx, sy times its size), pixel
    centres."""
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])


def to_level(f: Features, h: Features) -> np.ndarray:
    """3x3 map from f's thumbnail px to a reduced copy's px (pixel centres)."""
    return centres(h.grey.shape[1] / f.grey.shape[1], h.grey.shape[0] / f.grey.shape[0])

