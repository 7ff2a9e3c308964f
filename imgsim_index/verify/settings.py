"""The settings of pair matching, in one place.

MatchSettings: the tunables (verify.VerifySettings.tunables changes them; validate() checks
them). The constants below it are the fixed choices of the
method: limits and sizes that no user has needed to change, each named and explained here so
that no function body hides a threshold. Pixel values are at the thumbnail scale (long side
MatchSettings.thumb_side) unless said otherwise; grey levels are 0..255.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MatchSettings:
    """Tunables. Pixel values are at the thumbnail scale (long side ``thumb_side``)."""

    thumb_side: int = 512  # long side of the grey thumbnail used for alignment and residuals
    sift_side: int = 256  # long side of the image SIFT runs on (smaller = faster describe)
    max_features: int = 400  # SIFT keypoints kept per image
    ratio: float = 0.8  # Lowe ratio test
    ransac_px: float = 3.0  # RANSAC reprojection threshold (thumbnail px)
    min_inliers: int = 12  # fewer RANSAC inliers = no alignment
    sketch_ncc: float = 0.8  # dihedral sketch correlation needed to try that transform
    block: int = 16  # residual block size (thumbnail px)
    diff_floor: float = 10.0  # a block differs if its mean |residual| exceeds this grey level...
    diff_noise_k: float = 3.0  # ...and this multiple of the median block residual
    diff_contrast: float = 0.5  # ...and this multiple of the block's grey std (either image)
    max_differing: float = 0.02  # share of overlap blocks allowed to differ in a copy
    max_region: float = 0.01  # largest connected differing region (share of blocks) in a copy
    max_block_median: float = 8.0  # median block residual above this = pixels do not agree
    max_tone_dev: float = 55.0  # mean |tone curve - identity| above this = not an edit...
    # ...unless the curves are a pure gain (an exposure change, clipped at white): within
    # max_gain_dev grey levels of min(gain x level, 255), the gain in [1/max_gain, max_gain]
    max_gain_dev: float = 4.0
    max_gain: float = 3.0
    # when the global tone curves leave a map short of a copy, it is checked again with a
    # monotone curve per tile of local_tiles x local_tiles tiles on top (at the tiles'
    # centres, blended bilinearly across the picture, as CLAHE's default 8 x 8 tiles):
    # CLAHE, detail enhancement; 0 = never
    local_tiles: int = 8
    local_maps: int = 1  # ...on this many of the best-scoring maps (2 kept no more copies)
    # ...and first with a smooth gain field on top instead (a vignette, a graduated filter,
    # uneven light): a polynomial of this degree in x and y; 0 = never
    local_field: int = 4
    band_rows: float = 0.12  # an overlay band is at most this share of the block rows high
    overlay_contrast: float = 1.5  # ...and this many times more contrasted in one image
    max_overlay: float = 0.12  # largest share of blocks a text-overlay band may cover
    # ...and it spans at least this share of the block columns (a line of text is wide; a
    # ball at two places in one row of two frames is not)
    overlay_min_width: float = 0.2
    # caption text (meme text: white letters outlined in black), which may be taller than
    # band_rows: blocks where one image has at least caption_stroke of its pixels near white
    # over darker pixels of the other image and as many near black over lighter, in bands at most
    # caption_rows of the block rows high, at least caption_min_width of the columns wide,
    # within the top or bottom caption_zone of the rows, their text blocks at most
    # max_caption of the blocks in all (0 = no captions); a block around them is the text's
    # too
    caption_stroke: float = 0.03
    caption_rows: float = 0.25
    caption_min_width: float = 0.3
    caption_zone: float = 0.35
    max_caption: float = 0.3
    min_overlap: float = 0.55  # overlap / larger content area needed to verify at all
    max_hue_deg: float = 25.0  # mean hue change allowed between two colour images
    flat_std: float = 3.0  # grey std (thumbnail, or overlap) below which an image can be flat
    # ...and no more than flat_max_share of its pixels are flat_dev grey levels or more from
    # its median: small strokes on a blank page (an 18 px signature on 800x600 is 0.2% of the
    # thumbnail's pixels, std 5.5; a smaller or fainter one passes the std test) are content
    flat_dev: float = 12.0
    flat_max_share: float = 0.0002  # about 40 px of a 512x384 thumbnail
    # two flat images are copies only when their mean R, G and B each differ by at most this
    # (JPEG re-encoding moves a flat colour by a level or two); else, and whenever only one
    # image is flat, they are other shots
    flat_colour_tol: float = 6.0
    trim_std: float = 2.5  # a margin row/column is uniform below this grey std
    ecc_confirm_px: float = 1.5  # ECC moving the sketch map less than this confirms it
    # each map is first checked at half the thumbnail size (blocks of block / 2); one that
    # fails there by this factor on any limit is rejected without the full-size check
    coarse_margin: float = 2.0  # 0: no coarse check
    ecc_start_ncc: float = 0.5  # sketch correlation from which ECC refines a failed sketch map
    coarse_accept: int = 1  # a map passing a coarse check by coarse_margin is a copy
    coarse_levels: int = 2  # coarse checks: 1 = at half size; 2 = a quarter (to pass), then half
    block_hue_deg: float = 45.0  # a block coloured in both whose hue moved more differs
    min_class_share: float = 0.005  # a colour class with less of the overlap: no curve of its own
    # a connected region of at least strong_min_blocks differing blocks whose residual is
    # above both strong_ratio times the noise level (diff_floor, diff_noise_k x the median
    # block residual) and strong_floor grey levels is new content,
    # however small (a ball that moved between two frames covers 0.3% of the blocks)
    strong_ratio: float = 2.0
    strong_floor: float = 20.0
    strong_min_blocks: int = 1
    # ...not counting blocks with more than this share clipped (any channel at 0-3 or 252-255)
    strong_clip_share: float = 0.25
    # the box-to-box map of two sketches is tried when the two content boxes' aspect ratios
    # differ by at most this factor: a whole picture resized without keeping its aspect
    # (640x480 -> 224x224 is 1.33, a 2:1 stretch 2) is a separate scale per axis, which the
    # similarity fitted to keypoints cannot express; the residual check decides as for any map
    max_squash: float = 2.5

    def validate(self) -> MatchSettings:
        """Return self, or raise ValueError naming the first bad setting."""
        checks = [
            (64 <= self.thumb_side <= 2048, "thumb_side must be in [64, 2048]"),
            (64 <= self.sift_side <= self.thumb_side, "sift_side must be in [64, thumb_side]"),
            (self.max_features >= 50, "max_features must be >= 50"),
            (0.5 <= self.ratio < 1.0, "ratio must be in [0.5, 1)"),
            (self.ransac_px > 0, "ransac_px must be > 0"),
            (self.min_inliers >= 4, "min_inliers must be >= 4"),
            (0.0 < self.sketch_ncc <= 1.0, "sketch_ncc must be in (0, 1]"),
            (4 <= self.block <= 64, "block must be in [4, 64]"),
            (self.diff_floor > 0 and self.diff_noise_k > 0, "diff_floor, diff_noise_k must be > 0"),
            (0.0 <= self.max_differing < 1.0, "max_differing must be in [0, 1)"),
            (0.0 <= self.max_region < 1.0, "max_region must be in [0, 1)"),
            (self.diff_contrast >= 0, "diff_contrast must be >= 0"),
            (self.max_block_median > 0, "max_block_median must be > 0"),
            (self.max_tone_dev > 0, "max_tone_dev must be > 0"),
            (self.max_gain_dev >= 0 and self.max_gain >= 1.0,
             "max_gain_dev must be >= 0, max_gain >= 1"),
            (self.local_tiles in (0, *range(2, 17)) and self.local_maps >= 1,
             "local_tiles must be 0 or in [2, 16], local_maps >= 1"),
            (0 <= self.local_field <= 8, "local_field must be in [0, 8]"),
            (0.0 < self.band_rows <= 1.0, "band_rows must be in (0, 1]"),
            (self.overlay_contrast >= 1.0, "overlay_contrast must be >= 1"),
            (0.0 <= self.max_overlay < 1.0, "max_overlay must be in [0, 1)"),
            (0.0 <= self.overlay_min_width <= 1.0, "overlay_min_width must be in [0, 1]"),
            (0.0 < self.caption_stroke <= 0.5 and 0.0 < self.caption_rows <= 1.0
             and 0.0 <= self.caption_min_width <= 1.0 and 0.0 < self.caption_zone <= 0.5
             and 0.0 <= self.max_caption < 1.0,
             "caption_stroke must be in (0, 0.5], caption_rows in (0, 1], caption_min_width "
             "in [0, 1], caption_zone in (0, 0.5], max_caption in [0, 1)"),
            (0.0 < self.min_overlap <= 1.0, "min_overlap must be in (0, 1]"),
            (0.0 < self.max_hue_deg <= 180.0, "max_hue_deg must be in (0, 180]"),
            (self.flat_std >= 0 and self.trim_std >= 0, "flat_std, trim_std must be >= 0"),
            (self.flat_dev > 0 and self.flat_colour_tol >= 0,
             "flat_dev must be > 0, flat_colour_tol >= 0"),
            (0.0 <= self.flat_max_share < 1.0, "flat_max_share must be in [0, 1)"),
            (self.ecc_confirm_px >= 0, "ecc_confirm_px must be >= 0"),
            (self.coarse_margin == 0 or self.coarse_margin >= 1,
             "coarse_margin must be 0 (off) or >= 1"),
            (0.0 < self.ecc_start_ncc <= 1.0, "ecc_start_ncc must be in (0, 1]"),
            (0.0 <= self.min_class_share <= 1.0, "min_class_share must be in [0, 1]"),
            (self.coarse_accept in (0, 1), "coarse_accept must be 0 or 1"),
            (self.coarse_levels in (1, 2, 3), "coarse_levels must be 1, 2 or 3"),
            (0.0 < self.block_hue_deg <= 180.0, "block_hue_deg must be in (0, 180]"),
            (self.strong_ratio >= 1.0 and self.strong_floor > 0 and self.strong_min_blocks >= 1,
             "strong_ratio must be >= 1, strong_floor > 0, strong_min_blocks >= 1"),
            (0.0 <= self.strong_clip_share <= 1.0, "strong_clip_share must be in [0, 1]"),
            (1.0 <= self.max_squash <= 4.0, "max_squash must be in [1, 4]"),
        ]
        for ok, msg in checks:
            if not ok:
                # named as users set it: VerifySettings(tunables=...)
                raise ValueError(f"VerifySettings: {msg}")
        return self


DEFAULT = MatchSettings()


# ---------------------------------------------------------------- describing one image

LAB_ZERO = 128  # OpenCV's 8-bit Lab stores a* and b* offset by this
NEUTRAL_CHROMA = 10.0  # Lab chroma below this is grey (no hue); above it, clear colour
CLIP_LOW, CLIP_HIGH = 3, 252  # a channel at or below / at or above these levels is clipped
SKETCH_SIDE = 32  # side of the normalised sketch of the content box
TRIM_MEAN_TOL = 6.0  # a margin row/column is uniform only within this of the edge's mean...
TRIM_MIN_CONTENT = 0.3  # ...and a content box under this share of a side keeps the whole image
TRIM_MIN_MARGIN_PX = 2  # a margin of this many px or fewer is resampling noise, not a border

# ---------------------------------------------------------------- finding maps (align.py)

SKETCH_MAPS = 2  # the best-correlated dihedral transforms of the sketches that are tried
# the content boxes' aspect ratios may differ by this (log) on top of MatchSettings.max_squash
SKETCH_ASPECT_LOG_TOL = 0.04
# a content box's edge where the margin fades into the picture moves by a px or two with
# re-encoding: where the whole frames' map puts b's box within this many px of the boxes'
# map, it is tried too when the boxes' map fails (a JPEG copy a row shorter in its box)
FRAME_SNAP_PX = 3.0
RANSAC_SEED = 12345  # OpenCV's RNG seed before RANSAC: the same pair gives the same map
RANSAC_ITERS, RANSAC_CONFIDENCE, RANSAC_REFINE_ITERS = 2000, 0.995, 10
TEMPLATE_SIDE = 64.0  # the template search runs on content boxes of this long side...
TEMPLATE_MIN_PX, TEMPLATE_PART_MIN_PX = 8, 4  # ...at least this many px (image, template)
TEMPLATE_SHRINKS = (1.0, 0.95, 0.9, 0.85, 0.8)  # the template's scale per axis, tried
TEMPLATE_MIN_STD = 1.0  # a template flatter than this grey std is not searched
ECC_SIDE = 128.0  # ECC refines maps on thumbnails of at most this long side
ECC_ITERS, ECC_EPS, ECC_GAUSS = 100, 1e-5, 3  # its stop criteria and Gaussian pre-filter

# ---------------------------------------------------------------- checking one map (check.py)

OVERLAP_ERODE_PX = 5  # the overlap is eroded by a window of this side (resampled edges)
# a copy's fine detail (the grey minus its Gaussian blur of DETAIL_SIGMA px) follows the
# original's: where both images have some (a std of DETAIL_MIN_STD levels or more over
# the overlap; a blurred or downscaled copy has less), a copy needs the two to correlate
# by DETAIL_MIN_CORR at least. Copies of the hard edits (meme text, half size, JPEG 30,
# noise added) correlate 0.24 and more, a small smooth picture turned 2 deg (96 x 72 px,
# a map a fraction of a degree off) 0.087; smooth look-alikes that any map and tone
# curves fit (gradients under independent noise, 320 x 240 px) -0.01..0.02
DETAIL_SIGMA = 1.5
DETAIL_MIN_STD = 1.0
DETAIL_MIN_CORR = 0.05
# a map whose two scales differ by more than this factor (a squash) turns the picture
# by at most SQUASHED_TURN_MAX degrees off a right angle, else it is no copy edit (smooth
# look-alikes were fitted by 14-25 deg turns with a squash; skewed scans squashed into a
# box turn by a few degrees)
STRETCH_MIN_ANISOTROPY = 1.05
SQUASHED_TURN_MAX = 10.0
TURN_MIN_DEG = 0.3  # a map turned more than this off a right angle may have filled corners
# the corner fill of a turn counts only in one image and within this share of the picture
FILL_MIN_SHARE, FILL_MAX_SHARE = 0.002, 0.15
FILL_DARK, FILL_LIGHT = 12, 243  # fill is near black (at most) or near white (at least)...
FILL_GROW_PX = 7  # ...touching the border, grown by a window of this side
HUE_MIN_COLOURFUL = 0.001  # both images this colourful at least: hue changes are checked...
HUE_MEAN_COLOURFUL = 0.05  # ...and a mean hue change needs this much colour in both
HUE_MIN_PIXELS = 20  # fewer clearly coloured overlap pixels: no hue check at all
HUE_MIN_SHARE = 0.02  # the coloured pixels' share of the overlap needed for a mean hue
HUE_BLOCK_COVER = 0.5  # a block's hue is judged when this share of it is coloured in both
BLOCK_MIN_COVER = 0.75  # a block is judged when this share of its pixels is in the overlap
MIN_BLOCKS = 4  # fewer judged blocks: the overlap is too small to verify
BASE_BLUR_SIGMA = 0.8  # both images are smoothed this much before the tone curve
BLUR_STEPS = (1.0, 2.0, 3.0)  # further blurs tried on either image (sigma, on top of the base)
BLUR_MIN_GAIN = 0.97  # a stronger blur is kept only when it brings the error below this x
COARSE_MIN_BLOCKS = 8  # the coarse check needs images of at least this many blocks a side
MIN_BLOCK_PX = 4  # a coarse level whose blocks would be smaller than this is skipped
# below half size a small object is a few pixels wide: a map passed there is passed only
# when the thumbnails at their size show no solid blob of pixels far off (check._probe),
# judged after an opening by a disc of this side (the full check's is a third of a block:
# a ball of radius 7 px keeps too little of itself), one tone curve fitted on every
# this-th overlap pixel
PROBE_OPEN_PX = 3
PROBE_FIT_STRIDE = 4

# ---------------------------------------------------------------- residuals (residual.py)

REFIT_FLOOR_K = 3.0  # the tone curve is refitted without pixels predicted worse than this x
REFIT_MEDIAN_K = 6.0  # diff_floor and this x the median error (new content)...
REFIT_SAMPLE = 7  # ...the median taken over every this-th pixel
CLIP_SPREAD_K = 2.0  # at a clipped level a residual counts beyond this x the target's spread
# a blob of pixels whose residual is above the strong level, solid after an opening by a
# disc of about block / BLOB_OPEN_DIV px (a misregistered edge or a stroke is thinner) and
# covering BLOB_MIN_SHARE of the overlap at least, BLOB_MEAN_K times the level on average,
# is new content (a small ball that moved over a textured background leaves no block whose
# mean residual is strong; the blobs a local tone edit leaves are near the level: 1.4 lets
# none of the copies' blobs through in the hard edits and their sweep of strengths, and
# catches a grey ball at 1.47x the level on the vignette copy of chelsea). 0.0005 of the
# overlap is a ball of radius 1.5% of the width (0.0008 let three of 50 such balls through
# as copies; 0.0003 still loses no copy of the hard edits, their strengths, or JPEGs of
# quality 30)
BLOB_OPEN_DIV = 3
BLOB_MIN_SHARE = 0.0005
BLOB_MEAN_K = 1.4
CLIP_NEAR = 200  # a channel this light or lighter may be clipped in a copy (Features.bright)
CLIP_GREY_LIGHT = 128  # a clipped pixel this light or lighter is clipped at white
# a channel at 0-3 is clipped dark only in a pixel darker than this (a crushed shadow), and
# hides only the other image's levels darker than this (a ball on a black ground is judged)
CLIP_GREY_DARK = 64
BLOB_MAX_COUNT = 2  # ...and at most this many (an object that moved: its two places)
# ...counting only blobs of this x the minimum share (0.08% of the overlap, the minimum
# before it was lowered): a smaller speck beside a moved object must not hide it
BLOB_COUNT_K = 1.6
BLOB_SAME_NCC = 0.9  # ...where the two images do not correlate by this much
# colour blobs: a* b* of one image predicted from the other's by one affine map (a white
# balance, a saturation or hue change is one); a solid blob (as above) whose residual is
# above COLOUR_LEVEL and COLOUR_NOISE_K x its median, COLOUR_MEAN_K x that on average, is an
# object of another colour (a ball of the background's grey level that moved; 1.6: the
# ball over the rocket's tower is 1.67x, and no copy's colour blob of the hard edits and
# their sweep of strengths reaches 1.6x; at 1.5x the astronaut's 0.7 vignette fails)
COLOUR_LEVEL = 12.0
# where src's chroma is enlarged onto dst's grid by this factor or more, dst's chroma is
# judged at src's resolution (reduced to it and enlarged back): a resized copy's colours
# are blurred, and an enlarged copy holds no finer colour than its source
CHROMA_BAND_SCALE = 1.2
# the colour map also scales a* b* by a smooth light change (colour.light_change): the
# greys' ratio smoothed by a Gaussian of this share of the width (a vignette's scale, not a
# ball's), to the power that a gain on RGB scales a* b* by (the sRGB curve, then Lab's
# cube root: 2.2 / 3)
LIGHT_SIGMA = 1 / 12
LIGHT_CELLS_PER_SIGMA = 2.0  # the light smoothed on a grid this fine, then enlarged
LIGHT_CHROMA_POWER = 0.73
LIGHT_MIN_CHANGE = 0.05  # a light varying less than this: the colours as they are
# a pixel clipped in one image only, clearly coloured there (Lab chroma this or more), is
# judged by the colour blobs: a saturated object (a channel at 255) that moved
CLIP_COLOUR_CHROMA = 20.0
# ...and, where the other image is light (a channel at CLIP_NEAR) but not clipped, this many
# chroma px in from the clipped colour's edge
CLIP_INSIDE_PX = 2
# the same exposure as far as clipping goes: tone curves this close to identity, or a pure
# gain under CLIP_HIGH / CLIP_NEAR either way (it cannot clip a channel under CLIP_NEAR)
SAME_LIGHT_TONE_DEV = 3.0
TEXT_LINE_ASPECT = 3  # an overlay's component this many times wider than high: text
COLOUR_NOISE_K = 6.0
COLOUR_MEAN_K = 1.6
BAND_MIN_ROWS = 3  # a band (overlay, caption) may always be this many block rows high
BAND_MIN_ASPECT = 2  # a band is at least this many times wider than high
STROKE_WHITE, STROKE_BLACK = 220, 50  # caption letters are near white, outlined near black...
STROKE_CONTRAST = 40  # ...this many levels lighter / darker than the other image there
# a caption's letters, left out of the grey blobs within LETTER_ROWS block rows of its
# blocks: pixels LETTER_CONTRAST levels from the other image's, within block /
# LETTER_GROW_DIV px of pixels LETTER_RANGE levels apart (a stroke and its outline)
LETTER_CONTRAST = 20
LETTER_RANGE = 100
LETTER_GROW_DIV = 4
LETTER_ROWS = 2

# ---------------------------------------------------------------- judging (check.py)

OVERLAY_NEWS_SHARE = 0.005  # an overlay share under this is not named in the evidence
SCORE_MEDIAN_WEIGHT = 0.01  # a map's score: overlap - differing share - this x block median

# ---------------------------------------------------------------- tone curves (tone.py)

LUT_STEPS = 16  # tone curves are read from a table of this many steps per grey level
GAIN_MAX_LEVEL, GAIN_MIN_LEVEL = 250, 5  # a gain is fitted on curve values under this max,
GAIN_MIN_PIXELS = 16  # ...at levels over this min, and only from this many pixels
LOCAL_MIN_WEIGHT = 16.0  # a tile node's curve needs this much pixel weight around it...
LOCAL_NODE_SHARE = 8  # ...or 1/this of a node's share of the pixels, if more
# a smooth gain field (a vignette) is fitted on every FIELD_STRIDE-th overlap pixel, then
# again without the pixels predicted worse than FIELD_OUTLIER grey levels (new content)
FIELD_STRIDE, FIELD_OUTLIER = 5, 30.0
FIELD_RIDGE = 1e-6  # a tiny ridge keeps the field's normal equations solvable
FIELD_ROUNDS = 2  # field and global curves are fitted in turn this many times more
FIELD_MIN_GAIN = 0.05  # the target is divided by the field, at least this, to refit curves

# ---------------------------------------------------------------- evidence words (evidence.py)

# a copy lacks part of the other's picture (verdict.lacks) where more than this share of
# the other's content box falls outside its own (evidence._lacks_shares), and more than a
# band of LACK_EDGE_PX px along the smaller box's edge (in its own px)
LACK_MIN_SHARE = 0.005
LACK_EDGE_PX = 0.5
CROP_MIN_SHARE = 0.02  # a side cut by more than this share is named as cropped...
CROP_MIN_SHARE_FILLED = 0.075  # ...or by more than this when a turn filled the corners
CENTRED_TOL = 0.03  # opposite sides cut within this of each other: a centred crop
TURN_NAMED_DEG = 0.5  # a turn off a right angle is named from this...
TURN_WHOLE_DEG = 1.5  # ...in whole degrees from this, else to a tenth
RESIZE_NAMED = 0.03  # a size (log aspect) change beyond this is named
BORDER_NAMED = 0.02  # borders adding more than this share (more than the other's) are named
GREY_COLOURFUL, GREY_MAX_COLOURFUL = 0.05, 0.005  # colourful vs (almost) no colour: grey
TONE_NAMED = 6.0  # a tone curve this far from the identity is named
NOISE_NAMED = 1.0  # a block median above this is named as re-encoding or noise
