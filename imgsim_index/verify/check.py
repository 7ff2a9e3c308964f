"""The check of one map: do two thumbnails, aligned by a 2x3 map, show the same picture?

verify_map warps the image whose content is smaller on screen onto the other (upsampling
only), masks what a turn filled in, blurs the sharper one to match, predicts each image from
the other through monotone tone curves (residual.py) and judges the 16-px blocks where the
prediction fails: a copy when (almost) none differ beyond a text overlay or caption, nothing
small appeared or moved, the light and the colours changed as an edit would change them.
check_map runs it at coarser sizes first (a clear result there settles the map).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, partial

import cv2
import numpy as np

from imgsim_index.verify.colour import chroma_pair, colour_probe, hue_change
from imgsim_index.verify.evidence import Note
from imgsim_index.verify.features import Features, flat_pixels
from imgsim_index.verify.geometry import stretch, to_level
from imgsim_index.verify.residual import (
    Local,
    Residual,
    block_std,
    block_sums,
    caption_blocks,
    caption_letters,
    components,
    noise_and_level,
    residual,
    solid_blobs,
    split_overlay,
    text_in,
    text_line_rows,
)
from imgsim_index.verify.settings import (
    BAND_MIN_ASPECT,
    BAND_MIN_ROWS,
    BASE_BLUR_SIGMA,
    BLOB_MEAN_K,
    BLOB_MIN_SHARE,
    BLOCK_MIN_COVER,
    BLUR_MIN_GAIN,
    BLUR_STEPS,
    CLIP_GREY_DARK,
    CLIP_GREY_LIGHT,
    CLIP_HIGH,
    CLIP_NEAR,
    COARSE_MIN_BLOCKS,
    DETAIL_MIN_CORR,
    DETAIL_MIN_STD,
    DETAIL_SIGMA,
    FILL_DARK,
    FILL_GROW_PX,
    FILL_LIGHT,
    FILL_MAX_SHARE,
    FILL_MIN_SHARE,
    HUE_MEAN_COLOURFUL,
    HUE_MIN_COLOURFUL,
    MIN_BLOCK_PX,
    MIN_BLOCKS,
    OVERLAP_ERODE_PX,
    OVERLAY_NEWS_SHARE,
    PROBE_FIT_STRIDE,
    PROBE_OPEN_PX,
    SAME_LIGHT_TONE_DEV,
    SCORE_MEDIAN_WEIGHT,
    SQUASHED_TURN_MAX,
    STRETCH_MIN_ANISOTROPY,
    TURN_MIN_DEG,
    MatchSettings,
)

Blurs = dict[tuple[int, float], np.ndarray]  # blurred thumbnails shared by one comparison
Prepared = dict[int, "_Judging"]  # one map's judgements ready to run, by block size


@dataclass
class Check:
    """The result of checking one map."""

    copy: bool
    differing: float  # share of the judged blocks that differ
    score: float  # how well the map aligns the pictures (the best map of a pair stands)
    numbers: dict[str, float]
    notes: list[Note]

    @property
    def words(self) -> list[str]:
        return [n.words() for n in self.notes]


def _failed(nums: dict[str, float], note: Note) -> Check:
    return Check(False, 1.0, -1.0, nums, [note])


def _box_mask(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    m, (x0, y0, x1, y1) = np.zeros(shape, np.uint8), box
    m[y0:y1, x0:x1] = 1
    return m


def _extreme(g: np.ndarray) -> np.ndarray:
    return (g <= FILL_DARK) | (g >= FILL_LIGHT)


def _fill_mask(g: np.ndarray) -> np.ndarray:
    """Near-black or near-white regions touching the border (a transform's constant fill),
    grown to cover the resampled edge."""
    n, lab = cv2.connectedComponents(_extreme(g).astype(np.uint8), connectivity=4)
    keep = np.zeros(n, bool)
    keep[np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])] = True
    keep[0] = False
    grow = np.ones((FILL_GROW_PX, FILL_GROW_PX), np.uint8)
    return cv2.dilate(keep[lab].astype(np.uint8), grow) > 0


@dataclass
class _Placed:
    """Two thumbnails on one grid: `dst` as it is, `src` warped onto it by `to_dst`."""

    src: Features
    dst: Features
    to_dst: np.ndarray  # 2x3, src px -> dst px
    swap: bool  # src is the first image of the pair (the map was inverted)
    warped: np.ndarray  # uint8 grey of src on dst's grid
    valid: np.ndarray  # bool: where both have content (eroded at the edges)
    overlap: float  # valid / the larger content area


def _place(a: Features, b: Features, m: np.ndarray) -> tuple[_Placed, dict[str, float]]:
    """The pair on one grid, and the map's numbers (scale, mirrored, overlap, rotation)."""
    m3 = np.vstack([m, [0, 0, 1]])
    det = float(np.linalg.det(m[:, :2]))
    mirrored = det < 0
    s = float(np.sqrt(abs(det)))
    # warp the image whose content is smaller on screen onto the other (upsampling only)
    swap = s < 1.0
    src, dst, to_dst = (a, b, np.linalg.inv(m3)[:2]) if swap else (b, a, m)
    hd, wd = dst.grey.shape
    warped = cv2.warpAffine(src.grey, to_dst, (wd, hd), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    src_valid = cv2.warpAffine(_box_mask(src.grey.shape, src.box), to_dst, (wd, hd),
                               flags=cv2.INTER_NEAREST)
    valid = (src_valid > 0) & (_box_mask(dst.grey.shape, dst.box) > 0)
    erode = np.ones((OVERLAP_ERODE_PX, OVERLAP_ERODE_PX), np.uint8)
    valid = cv2.erode(valid.astype(np.uint8), erode) > 0
    area_d = (dst.box[2] - dst.box[0]) * (dst.box[3] - dst.box[1])
    area_s = (src.box[2] - src.box[0]) * (src.box[3] - src.box[1]) * abs(
        np.linalg.det(to_dst[:, :2]))
    overlap = float(valid.sum()) / max(area_d, area_s, 1.0)
    nums: dict[str, float] = {"scale": s, "mirrored": float(mirrored), "overlap": overlap}
    # rotation, in a's frame: angle of b's x axis
    ang = float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
    if mirrored:
        ang = float(np.degrees(np.arctan2(-m[1, 0], -m[0, 0])))
    nums["rotation_deg"] = ang
    return _Placed(src, dst, to_dst, swap, warped, valid, overlap), nums


def _mask_corner_fill(p: _Placed, nums: dict[str, float]) -> None:
    """A copy turned by a few degrees without growing the canvas has its corners filled
    with a constant; such fill in one image only is the edit's, not the picture's: it is
    left out of the overlap."""
    nums["fill_share"] = 0.0
    ang = nums["rotation_deg"]
    if abs(ang - round(ang / 90.0) * 90.0) <= TURN_MIN_DEG:
        return
    fill_d, fill_s = _fill_mask(p.dst.grey), _fill_mask(p.src.grey)
    signed = float(fill_d.mean()) - float(fill_s.mean())  # in one image only: which
    if FILL_MIN_SHARE < (share := abs(signed)) <= FILL_MAX_SHARE:
        nums["fill_share"], nums["fill_in"] = share, 1.0 + float((signed > 0) == p.swap)
        hd, wd = p.dst.grey.shape
        fill_w = cv2.warpAffine(fill_s.astype(np.uint8), p.to_dst, (wd, hd),
                                flags=cv2.INTER_NEAREST) > 0
        p.valid &= ~((fill_d & ~_extreme(p.warped)) | (fill_w & ~_extreme(p.dst.grey)))


def _no_blobs(shape: tuple[int, int], skip_rows: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(shape, bool), np.zeros(shape, bool)


def _hue(a: Features, b: Features, m: np.ndarray, p: _Placed, settings: MatchSettings,
         nums: dict[str, float]
         ) -> tuple[float, np.ndarray, Callable[..., tuple[np.ndarray, np.ndarray]]]:
    """(mean hue change or -1, blocks whose hue changed, what finds the blocks touched by a
    blob of another colour, given the block rows to skip) when both images have colour."""
    hd, wd = p.dst.grey.shape
    bs = settings.block
    hue, hue_blocks = -1.0, np.zeros((hd // bs, wd // bs), bool)
    blobs: Callable[..., tuple[np.ndarray, np.ndarray]] = partial(_no_blobs, hue_blocks.shape)
    if min(a.colourful, b.colourful) > HUE_MIN_COLOURFUL and hue_blocks.size:
        hue, hue_blocks, blobs = hue_change(a, b, m, p.swap, bs, hue_blocks.shape, settings)
        if min(a.colourful, b.colourful) <= HUE_MEAN_COLOURFUL:
            hue = -1.0  # too little colour for a mean over the picture
    nums["hue_change_deg"] = hue
    return hue, hue_blocks, blobs


def _deblur(grey_d: np.ndarray, grey_s: np.ndarray, idx: np.ndarray, dst_blur: Blurs,
            dst_key: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(signed blur sigma, dst blurred, src blurred): a light blur of both, then more blur
    on one of them while it helps the tone curve predict one from the other (the error is
    unimodal in it); > 0: dst blurred more, < 0: src."""
    from imgsim_index.verify.tone import apply_curve, tone_curve

    def blur_d(sigma: float) -> np.ndarray:  # the unwarped image's blurs: one per compare
        key = (dst_key, sigma)
        if key not in dst_blur:
            dst_blur[key] = cv2.GaussianBlur(grey_d, (0, 0), sigma)
        return dst_blur[key]

    blurred_d = blur_d(BASE_BLUR_SIGMA)
    blurred_s = cv2.GaussianBlur(grey_s, (0, 0), BASE_BLUR_SIGMA)
    d_v, s_v = blurred_d.ravel().take(idx), blurred_s.ravel().take(idx)
    curve = tone_curve(np.clip(s_v, 0, 255).astype(np.uint8), d_v)
    pred_s = apply_curve(s_v, curve)
    best = (float(np.mean(np.abs(d_v - pred_s))), 0.0, blurred_d, blurred_s)
    for which in (0, 1):  # blur dst, then src, more while it helps
        for sigma in BLUR_STEPS:
            sig = float(np.hypot(sigma, BASE_BLUR_SIGMA))
            x = blur_d(sig) if which == 0 else blurred_d
            y = cv2.GaussianBlur(grey_s, (0, 0), sig) if which == 1 else blurred_s
            yy = apply_curve(y.ravel().take(idx), curve) if which == 1 else pred_s
            xv = x.ravel().take(idx) if which == 0 else d_v
            err = float(np.mean(np.abs(xv - yy)))
            if err >= best[0] * BLUR_MIN_GAIN:
                break
            best = (err, sigma if which == 0 else -sigma, x, y)
    return best[1], best[2], best[3]


@dataclass
class _Judging:
    """What the judgement of one map needs, for one or both prediction directions."""

    p: _Placed
    grey_d: np.ndarray  # float32 grey of dst, unblurred
    grey_s: np.ndarray  # float32 grey of src warped, unblurred
    blurred_d: np.ndarray
    blurred_s: np.ndarray
    idx: np.ndarray  # flat indices of the pixels the tone curves are fitted on
    inside: np.ndarray  # float32 0/1: the overlap
    counts: np.ndarray  # overlap pixels per block
    used: np.ndarray  # bool: blocks judged
    caption: np.ndarray  # bool: blocks of caption text
    hue: float
    hue_blocks: np.ndarray
    # blocks touched by a blob of another colour (colour_blobs: judged where neither image
    # is clipped; and where one only is, clearly coloured there), computed on first call
    colour_blobs: Callable[[], tuple[np.ndarray, np.ndarray]]
    nums: dict[str, float]
    settings: MatchSettings
    # set by prime()
    std_d: np.ndarray = field(init=False)  # block grey std of dst (blurred)
    std_s: np.ndarray = field(init=False)  # ...of src
    cls_s: np.ndarray = field(init=False)  # src's colour classes on dst's grid
    fwd: Residual = field(init=False)  # dst predicted from src, global curves
    clipped: np.ndarray = field(init=False)  # blocks whose strong residuals are no content
    # bool per px, left out of the blobs when predicting dst from src (fwd) and back (rev)
    unjudged_fwd: np.ndarray = field(init=False)
    unjudged_rev: np.ndarray = field(init=False)

    def prime(self) -> None:
        """The block contrasts, the clipped blocks and the prediction of dst from src
        through the global tone curves, which every judgement of this map starts from."""
        s, p = self.settings, self.p
        self.std_d = block_std(self.blurred_d, self.inside, self.counts, s.block)
        self.std_s = block_std(self.blurred_s, self.inside, self.counts, s.block)
        hd, wd = p.dst.grey.shape
        self.cls_s = cv2.warpAffine(p.src.tone_classes(), p.to_dst, (wd, hd),
                                    flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        self.clipped = self._clipped()
        letters = caption_letters(self.grey_d, self.grey_s, self.caption, s.block)
        self.unjudged_fwd = self.unjudged_fwd | letters  # judged between a caption's letters
        self.unjudged_rev = self.unjudged_rev | letters
        self.fwd = self._predict()
        self.nums["tone_shift"] = self.fwd.tone_shift
        self.hue_blocks &= self.used

    def _predict(self, local: Local = "", reverse: bool = False) -> Residual:
        if reverse:
            return residual(self.blurred_s, self.blurred_d, self.grey_d,
                            self.p.dst.tone_classes(), self.std_s, self.idx, self.inside,
                            self.counts, self.used, self.settings, local,
                            left_out=self.unjudged_rev)
        fitted = self.fwd if local else None  # local tone goes on top of the same global
        return residual(self.blurred_d, self.blurred_s, self.grey_s, self.cls_s, self.std_d,
                        self.idx, self.inside, self.counts, self.used, self.settings, local,
                        fitted, self.unjudged_fwd)

    def run(self, local: Local = "") -> Check:
        """Predict dst from src; when that alone allows a copy, src from dst too (a
        direction can only add differing blocks, so the verdict is the same in either
        order). local: the tone model that varies over the picture on top of the global
        curves ("": none)."""
        fwd = self.fwd if not local else self._predict(local)
        chk = _judge([fwd], self)
        if chk.copy:
            chk = _judge([fwd, self._predict(local, reverse=True)], self)
        return chk

    def cannot_pass(self) -> bool:
        """No curves on top of the global ones make this map a copy: the global curves
        (not a gain) or the hue moved beyond their limits, which local curves leave as they
        are (residual() takes the tone numbers from the global curves; _judge)."""
        s, f = self.settings, self.fwd
        exposure = f.gain_dev <= s.max_gain_dev and 1.0 / s.max_gain <= f.gain <= s.max_gain
        return (f.tone_dev > s.max_tone_dev and not exposure) or self.hue > s.max_hue_deg

    def clearly_other_if_not_copy(self, k: float) -> bool:
        """_clearly_other holds of any check of this map that is not a copy (its tone
        numbers are then the forward prediction's: _Judging.run)."""
        s = self.settings
        return self.fwd.tone_dev > k * s.max_tone_dev or self.hue > k * s.max_hue_deg

    def _clipped(self) -> np.ndarray:
        """Blocks largely clipped in either image (in any channel): an edit that clipped
        them leaves residuals there that are no new content."""
        p, bs = self.p, self.settings.block
        hd, wd = p.dst.grey.shape
        clip_w = cv2.warpAffine(p.src.clip, p.to_dst, (wd, hd), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        # pixels clipped in the source (any channel) say nothing of the target's level
        # there, nor do pixels clipped light in the target (a channel at white: its grey
        # is no function of the source's); a target clipped dark still shows what is
        # there, and so does a target lighter than CLIP_GREY_DARK where the source is
        # clipped dark (a shadow crushed to black hid dark levels, not a ball on it)
        clip_s, clip_d = clip_w > 0, p.dst.clip > 0
        dark_s, dark_d = self.grey_s < CLIP_GREY_DARK, self.grey_d < CLIP_GREY_DARK
        self.unjudged_fwd = (clip_s & ~(dark_s & ~dark_d)) | (
            clip_d & (self.grey_d >= CLIP_GREY_LIGHT))
        self.unjudged_rev = (clip_d & ~(dark_d & ~dark_s)) | (
            clip_s & (self.grey_s >= CLIP_GREY_LIGHT))
        clip = (self.unjudged_fwd | self.unjudged_rev).astype(np.float32) * self.inside
        hb, wb = self.used.shape
        return block_sums(clip, bs, hb, wb) > self.settings.strong_clip_share * np.maximum(
            self.counts, 1.0)


def _prepare(a: Features, b: Features, m: np.ndarray, settings: MatchSettings,
             blurs: Blurs) -> _Judging | Check:
    """Everything the judgement needs, or the failed Check when there is nothing to judge."""
    p, nums = _place(a, b, m)
    if p.overlap < settings.min_overlap:
        return _failed(nums, Note("overlap_low", (p.overlap,)))
    anisotropy, turn = stretch(m)
    nums["anisotropy"], nums["squashed_turn_deg"] = anisotropy, turn
    if anisotropy > STRETCH_MIN_ANISOTROPY and turn > SQUASHED_TURN_MAX:
        return _failed(nums, Note("slanted"))
    _mask_corner_fill(p, nums)
    grey_d, grey_s, valid = p.dst.grey.astype(np.float32), p.warped.astype(np.float32), p.valid
    hue, hue_blocks, colour_blobs = _hue(a, b, m, p, settings, nums)
    nums["std_a"], nums["std_b"] = float(grey_d[valid].std()), float(grey_s[valid].std())
    if flat_pixels(grey_d[valid], settings) or flat_pixels(grey_s[valid], settings):
        # flat where they overlap: nothing there tells a copy from another picture (two
        # wholly flat images were judged by their colours before any alignment)
        nums["mean_diff"] = abs(float(grey_d[valid].mean()) - float(grey_s[valid].mean()))
        return _failed(nums, Note("flat_overlap"))
    bs = settings.block
    hb, wb = grey_d.shape[0] // bs, grey_d.shape[1] // bs
    if hb == 0 or wb == 0:
        return _failed(nums, Note("too_small"))
    inside = valid.astype(np.float32)
    counts = np.rint(block_sums(inside, bs, hb, wb))
    used = counts >= BLOCK_MIN_COVER * bs * bs
    if used.sum() < MIN_BLOCKS:
        return _failed(nums, Note("overlap_small"))
    caption = caption_blocks(grey_d, grey_s, inside, counts, used, settings)
    fit = valid
    if caption.any():  # the tone curves and the blur are the picture's, not the text's
        fit = valid.copy()
        fit[: hb * bs, : wb * bs] &= ~np.kron(caption, np.ones((bs, bs), bool))
    idx = np.flatnonzero(fit)  # raster order: img.ravel().take(idx) = img[fit]
    sigma, blurred_d, blurred_s = _deblur(grey_d, grey_s, idx, blurs, id(p.dst))
    nums["blur_sigma"] = sigma
    ready = _Judging(p, grey_d, grey_s, blurred_d, blurred_s, idx, inside, counts, used,
                     caption, hue, hue_blocks,
                     cache(partial(colour_blobs, skip_rows=caption.any(axis=1))), nums, settings)
    ready.prime()
    return ready


def _ready(a: Features, b: Features, m: np.ndarray, settings: MatchSettings, blurs: Blurs,
           prepared: Prepared | None) -> _Judging | Check:
    """_prepare, or what it gave before for this map at this block size (`prepared`)."""
    if prepared is not None and settings.block in prepared:
        return prepared[settings.block]
    ready = _prepare(a, b, m, settings, blurs)
    if prepared is not None and isinstance(ready, _Judging):
        prepared[settings.block] = ready
    return ready


def _verify(ready: _Judging | Check, local: Local) -> Check:
    if isinstance(ready, Check):
        return ready
    chk = ready.run(local)
    if local:
        chk.numbers["local_tone"] = 1.0
        if chk.copy:
            chk.notes.insert(0, Note("local_tone"))
    return chk


def verify_map(a: Features, b: Features, m: np.ndarray, settings: MatchSettings,
               blurs: Blurs | None = None, local: Local = "",
               prepared: Prepared | None = None) -> Check:
    """Check a 2x3 map m (b thumbnail px -> a thumbnail px). blurs: blurred thumbnails
    shared by the checks of one comparison. local: predict each image from the other with
    a tone model that varies over the picture on top of the global curves ("tiles":
    curves per tile, settings.local_tiles; "field": a smooth gain field,
    settings.local_field). prepared: this map's
    judgements ready to run, by block size (filled here; the local check of a map its
    global check prepared starts from them)."""
    return _verify(_ready(a, b, m, settings, {} if blurs is None else blurs, prepared), local)


def _differing(dirs: list[Residual], j: _Judging,
               nums: dict[str, float]) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(differing share, overlay share, the differing blocks, the overlay's blocks): text
    overlays are told apart in each direction, then the blocks either direction finds
    differing, and not an overlay band or caption there, are new content."""
    settings, used, caption = j.settings, j.used, j.caption
    n_used = float(used.sum())
    split = [split_overlay(d, j.std_d, j.std_s, settings) for d in dirs]
    rest = np.logical_or.reduce([r for r, _ in split] + [j.hue_blocks])
    in_caption = rest & caption
    rest &= ~caption
    overlay_blocks = np.logical_or.reduce([b for _, b in split]) & ~rest & ~caption
    overlay = float(overlay_blocks.sum())
    differing = float(rest.sum()) / n_used
    comps = components(rest)
    nums["largest_region"] = max((c[4] for c in comps), default=0) / n_used
    # shaped like a text band (the coarse check leaves such a region to the full one)
    band_rows = max(BAND_MIN_ROWS, round(settings.band_rows * used.shape[0]))
    nums["band_shaped"] = float(any(c[3] <= band_rows and c[2] >= BAND_MIN_ASPECT * c[3]
                                    for c in comps))
    nums["regions"] = float(len(comps))
    overlay_share = overlay / n_used
    if overlay_share > settings.max_overlay:
        differing += overlay_share
        overlay_share = 0.0
    caption_share = float(in_caption.sum()) / n_used  # under max_caption: caption_blocks
    nums["caption_share"] = caption_share
    overlay_share += caption_share
    nums["differing_share"], nums["overlay_share"] = differing, overlay_share
    if carrier := text_in(j.grey_d, j.grey_s, caption & used, settings.block, n_used,
                          settings.overlay_contrast, j.p.swap):
        nums["text_in"] = carrier  # which image carries the caption (verdict.lacks)
    return differing, overlay_share, rest, overlay_blocks


def _judge(dirs: list[Residual], j: _Judging) -> Check:
    """The check's verdict from the residuals of one or both directions."""
    settings, nums = j.settings, dict(j.nums)
    notes: list[Note] = []
    tone_dev = max(d.tone_dev for d in dirs)
    med = max(d.median for d in dirs)
    nums["tone_dev"], nums["block_median"] = tone_dev, med
    differing, overlay_share, rest, overlay_blocks = _differing(dirs, j, nums)
    copy = differing <= settings.max_differing and nums["largest_region"] <= settings.max_region
    # a small object that moved, appeared or vanished (a ball between two video frames)
    # stays under the shares above; its blocks differ by far, where an edit's do not
    strong = np.logical_or.reduce([d.strong for d in dirs]) & rest & ~j.clipped
    nums["strong_blocks"] = float(strong.sum())
    if max((c[4] for c in components(strong)), default=0) >= settings.strong_min_blocks:
        copy = False
        notes.append(Note("small_change"))
    if nums["largest_region"] > settings.max_region:
        notes.append(Note("region", (nums["largest_region"],)))
    if med > settings.max_block_median:
        copy = False
        notes.append(Note("throughout"))
    # an exposure change is a gain (clipped at white) however strong: x0.6 on a bright
    # picture moves its levels by 70 and more; another light (day and night) is no gain
    gains = [d.gain for d in dirs if d.gain_dev <= settings.max_gain_dev]
    nums["gain"] = dirs[0].gain
    nums["gain_dev"] = max(d.gain_dev for d in dirs)
    exposure = len(gains) == len(dirs) and all(
        1.0 / settings.max_gain <= g <= settings.max_gain for g in gains)
    if tone_dev > settings.max_tone_dev and not exposure:
        copy = False
        notes.append(Note("light"))
    nums["local_tone_dev"] = max(d.local_dev for d in dirs)
    if j.hue >= 0 and j.hue > settings.max_hue_deg:
        copy = False
        notes.append(Note("colours"))
    if overlay_share >= OVERLAY_NEWS_SHARE:  # the share is in the numbers; less is no news
        notes.append(Note("overlay", (overlay_share,)))
    if copy and _solid_blobs(dirs, j, nums, overlay_blocks):
        copy = False
        notes.insert(0, Note("small_change"))
    score = j.p.overlap - differing - SCORE_MEDIAN_WEIGHT * med
    return Check(copy, differing, score, nums, notes)


def _solid_blobs(dirs: list[Residual], j: _Judging, nums: dict[str, float],
                 overlay: np.ndarray) -> bool:
    """A solid blob of pixels that differ by far, in grey or in colour (a small object that
    moved, whose blocks stay under the strong level). Grey blobs are sought everywhere
    but on a caption's letters (caption_letters, left out per pixel in prime): a ball
    between or beside the letters counts. Colour blobs are sought outside the caption's
    block rows (its letters' colour and anti-aliased edges; the blocks are grown by one
    already: a ball just above or below the text counts). Where the two have the
    same exposure (_same_light), a colour clipped in one image only is no exposure's
    doing: its blobs count too (a bright red or green ball that moved has a channel at
    255), outside the rows of an overlay's lines of text (text_line_rows: a yellow
    subtitle is clipped and coloured). Asked only of a map that passes every other limit."""
    colour, clipped = j.colour_blobs()
    if clipped.any() and _same_light(dirs, j.settings):
        colour = colour | (clipped & ~text_line_rows(overlay))
    grey = np.logical_or.reduce([d.blobs() for d in dirs])  # left out: caption_letters
    blobs = (grey | (colour & ~j.caption.any(axis=1, keepdims=True))) & j.used
    nums["blob_blocks"] = float(blobs.sum())
    return bool(blobs.any())


def _same_light(dirs: list[Residual], settings: MatchSettings) -> bool:
    """The two images' levels differ by too little for an exposure change to clip a
    channel in one that was under CLIP_NEAR in the other: tone curves within
    SAME_LIGHT_TONE_DEV of identity, or a pure gain under CLIP_HIGH / CLIP_NEAR (a camera's
    exposure drifting a few percent between frames)."""
    if max(d.tone_dev for d in dirs) <= SAME_LIGHT_TONE_DEV:
        return True
    most = CLIP_HIGH / CLIP_NEAR
    return all(d.gain_dev <= settings.max_gain_dev and 1.0 / most <= d.gain <= most
               for d in dirs)


def small_change_only(c: Check, s: MatchSettings) -> bool:
    """c failed only because something small appeared, moved or vanished: the pictures
    agree within every share, median, tone and hue limit, and a compact region differs by
    far. Tone that varies over a copy (a vignette, CLAHE) spreads its residual and fails
    those limits; local curves fitted around a compact change could only hide it."""
    kinds = {n.kind for n in c.notes}
    return (not c.copy and "small_change" in kinds
            and not kinds & {"throughout", "light", "colours"}
            and c.differing <= s.max_differing
            and c.numbers.get("largest_region", 0.0) <= s.max_region)


def _clearly_other(c: Check, s: MatchSettings) -> bool:
    n, k = c.numbers, s.coarse_margin
    regions = not n.get("band_shaped") and (c.differing > k * s.max_differing
                                            or n.get("largest_region", 0.0) > k * s.max_region)
    return (n.get("overlap", 1.0) < s.min_overlap or regions
            or n.get("block_median", 0.0) > k * s.max_block_median
            or n.get("tone_dev", 0.0) > k * s.max_tone_dev
            or n.get("hue_change_deg", -1.0) > k * s.max_hue_deg)


def _clearly_copy(c: Check, s: MatchSettings) -> bool:
    n, k = c.numbers, s.coarse_margin
    return (c.differing * k <= s.max_differing and n.get("largest_region", 0.0) * k <= s.max_region
            and not n.get("regions", 0.0)
            and n.get("block_median", 0.0) * k <= s.max_block_median
            and n.get("tone_dev", 0.0) * k <= s.max_tone_dev
            and n.get("hue_change_deg", -1.0) * k <= s.max_hue_deg)


def check_map(a: Features, b: Features, m: np.ndarray, settings: MatchSettings,
              blurs: Blurs, local: Local = "", prepared: Prepared | None = None) -> Check:
    """verify_map, after checks at coarser sizes that settle a map clearly failing or
    passing there (coarse_check)."""
    settled = coarse_check(a, b, m, settings, blurs, local, prepared)
    return settled if settled is not None else full_check(a, b, m, settings, blurs, local, prepared)


def coarse_check(a: Features, b: Features, m: np.ndarray, settings: MatchSettings,
                 blurs: Blurs, local: Local = "", prepared: Prepared | None = None
                 ) -> Check | None:
    """The check of map m at coarser sizes (coarse_levels halvings, coarsest first, with
    blocks halved too) when one settles it, failing there, or passing there
    (coarse_accept), by coarse_margin on every limit; else None (a map in between goes on
    to the next size, the last to full_check). local: only a copy counts (align.LocalTone)
    and only the full size passes a map with local tone, so the coarse sizes judge it only
    at half size where the global tone or hue rule it out (returned as its global check,
    not a copy)."""
    k = settings.coarse_margin
    if not k or min(a.grey.shape + b.grey.shape) < COARSE_MIN_BLOCKS * settings.block:
        return None
    m3 = np.vstack([m, [0, 0, 1]])
    probed = None  # the full-size look (_probe) found a blob: asked once per map
    for level in range(settings.coarse_levels, 0, -1):
        block = settings.block >> level
        if block < MIN_BLOCK_PX:
            continue
        ha, hb = a, b
        for _ in range(level):
            ha, hb = ha.half(), hb.half()
        mh = to_level(a, ha) @ m3 @ np.linalg.inv(to_level(b, hb))
        ready = _ready(ha, hb, mh[:2], dataclasses.replace(settings, block=block), blurs, prepared)
        if local and isinstance(ready, _Judging):
            if level == 1 and ready.cannot_pass() and ready.clearly_other_if_not_copy(k):
                return _verify(ready, "")  # not a copy, and clearly other: settled
            if level > 1:
                continue  # only a pass could settle a map here, and a local one cannot
        c = _verify(ready, local)
        # below half size only a clear pass settles a map: resampling a noisy picture
        # (a star field) that far makes blocks differ that agree at half size; a pass
        # with local tone never does (local curves on coarse blocks follow a small
        # object that moved, which the full size shows)
        if level == 1 and not c.copy and _clearly_other(c, settings):
            c.numbers["coarse"] = float(level)
            return c
        if c.copy and settings.coarse_accept and not local and _clearly_copy(c, settings):
            if probed := _probe(a, b, m, settings) if probed is None else probed:
                continue  # something small the full size shows: the next size judges it
            c.numbers["coarse"] = float(level)
            return c
    return None


def _probe(a: Features, b: Features, m: np.ndarray, settings: MatchSettings) -> bool:
    """At the thumbnails' size, a solid blob of pixels far off from one tone curve's
    prediction, or of another colour (colour_blobs): a small object that moved, appeared
    or vanished, which a quarter of the size shows as a few pixels. A cheap look, a few
    milliseconds, before a map is passed at a coarser size; it only sends the map on to
    the next size, which judges it."""
    from imgsim_index.verify.tone import tone_curve

    p, _ = _place(a, b, m)
    idx = np.flatnonzero(p.valid)
    bs = settings.block
    hb, wb = p.valid.shape[0] // bs, p.valid.shape[1] // bs
    if idx.size == 0 or hb == 0 or wb == 0:
        return False
    dst = p.dst.grey.astype(np.float32)
    fit = idx[::PROBE_FIT_STRIDE]
    curve = tone_curve(p.warped.ravel().take(fit), dst.ravel().take(fit)).astype(np.float32)
    src = curve.take(p.warped)  # the warped grey levels through the curve
    res = np.abs(dst - src)
    inside = p.valid.astype(np.float32)
    res *= inside
    counts = block_sums(inside, bs, hb, wb)
    used = counts >= BLOCK_MIN_COVER * bs * bs
    if not used.any():
        return False
    median = float(np.median((block_sums(res, bs, hb, wb) / np.maximum(counts, 1.0))[used]))
    level = noise_and_level(median, settings)[1]
    hd, wd = p.valid.shape
    clipped = (cv2.warpAffine(p.src.clip, p.to_dst, (wd, hd), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_REPLICATE) > 0) | (p.dst.clip > 0)
    warped = p.warped.astype(np.float32)  # judged between a caption's letters, as below
    caption = caption_blocks(dst, warped, inside, counts, used, settings)
    clipped |= caption_letters(dst, warped, caption, bs)
    if solid_blobs(res, level, clipped, PROBE_OPEN_PX, BLOB_MIN_SHARE * float(idx.size),
                   BLOB_MEAN_K, (dst, src)) is not None:
        return True
    if min(a.colourful, b.colourful) <= HUE_MIN_COLOURFUL:
        return False
    # a ball of the ground's grey in another colour: the full check's colour blobs
    return colour_probe(chroma_pair(a, b, m, p.swap), max(1, bs // 2), PROBE_FIT_STRIDE,
                        np.asarray(caption.any(axis=1)))


def fine_detail(a: Features, b: Features, m: np.ndarray) -> tuple[float, float]:
    """(the smaller of the two images' fine-detail std over the overlap, the correlation of
    their fine detail) under map m, at the thumbnails' size: the grey minus its Gaussian
    blur (DETAIL_SIGMA), the source warped onto the target. A copy's detail follows the
    original's; two smooth pictures that a map and tone curves fit (gradients under
    their own noise) have detail that does not correlate at all."""
    p, _ = _place(a, b, m)
    v = p.valid
    if not v.any():
        return 0.0, 0.0
    hp = []
    for g in (p.dst.grey.astype(np.float32), p.warped.astype(np.float32)):
        x = (g - cv2.GaussianBlur(g, (0, 0), DETAIL_SIGMA))[v]
        hp.append(x - x.mean())
    x, y = hp
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    corr = float((x * y).sum()) / den if den > 0 else 0.0
    return min(float(x.std()), float(y.std())), corr


def detail_differs(a: Features, b: Features, m: np.ndarray, chk: Check) -> Check:
    """chk, a copy, failed when the fine detail of both images is there and does not
    correlate (fine_detail); else chk."""
    std, corr = fine_detail(a, b, m)
    chk.numbers["detail_std"], chk.numbers["detail_corr"] = std, corr
    if std < DETAIL_MIN_STD or corr >= DETAIL_MIN_CORR:
        return chk
    return Check(False, chk.differing, chk.score, chk.numbers, [Note("detail")])


def full_check(a: Features, b: Features, m: np.ndarray, settings: MatchSettings,
               blurs: Blurs, local: Local = "", prepared: Prepared | None = None) -> Check:
    """verify_map at the thumbnails' size; with local tone, the global check alone where
    no local curves can make the map a copy (_Judging.cannot_pass)."""
    ready = _ready(a, b, m, settings, blurs, prepared)
    if local and isinstance(ready, _Judging) and ready.cannot_pass():
        return _verify(ready, "")
    return _verify(ready, local)
