"""Quality hints for reference images, before they are spent on a Gen-4 Image request.

Runway Gen-4 Image keeps a character or location consistent best when its references are evenly
lit, show the subject clearly, and are of decent quality; Replicate's wrapper additionally refuses
references whose aspect ratio lies outside 0.5–2. :func:`check_image` looks for the common ways a
reference falls short and returns them as :class:`QualityWarning` values. It never raises for a
quality problem (nor for an odd image mode): a hint is advice, and the user may know better.

Everything is measured with Pillow on a grayscale copy downscaled to :data:`ANALYSIS_SIZE` px on
the long side, so a loaded 24-megapixel RGB photo is checked in about 25 ms, and so that blur is
judged at the scale the whole picture is seen at, not pixel-peeped.

Thresholds, calibrated on drawn images (``tests/test_quality.py``) and two real photos:

* ``small``: short side below :data:`MIN_SHORT_SIDE` (512 px).
* ``aspect_ratio``: width / height outside :data:`MIN_ASPECT`–:data:`MAX_ASPECT` (0.5–2).
* ``blurry``: edge sharpness below :data:`BLUR_THRESHOLD` (20). Sharpness is the absolute
  Laplacian response reached by the strongest :data:`EDGE_FRACTION` (0.2 %) of pixels. Sharp
  images measured 73–128 (flat cartoons and 1-px line drawings included), the same images
  Gaussian-blurred with radius 6 measured 4–11, radius 2 (mild, not flagged) 35–67.
* ``low_contrast``: the middle 99.8 % of luminance values span fewer than
  :data:`LOW_CONTRAST_SPREAD` (40) of 256 levels. Ordinary images span 180–255; a picture
  veiled 85 % in grey spans ~30. When it fires, ``blurry`` is not also reported.
* ``harsh_lighting_highlights`` / ``harsh_lighting_shadows``: more than :data:`CLIP_FRACTION`
  (8 %) of pixels at luminance ≥ 250 / ≤ 5. A plain white or black studio backdrop trips these
  too; the message says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageFilter

__all__ = [
    "ANALYSIS_SIZE",
    "BLUR_THRESHOLD",
    "CLIP_FRACTION",
    "EDGE_FRACTION",
    "LOW_CONTRAST_SPREAD",
    "MAX_ASPECT",
    "MIN_ASPECT",
    "MIN_SHORT_SIDE",
    "ImageMetrics",
    "QualityWarning",
    "check_image",
    "measure_image",
]

#: Long side, in px, of the copy every pixel statistic is computed on.
ANALYSIS_SIZE = 512
#: Short side, in px, below which a reference is reported as ``small``.
MIN_SHORT_SIDE = 512
#: Short side, in px, we recommend (and ideal) when a reference is too small.
RECOMMENDED_SHORT_SIDE = 720
IDEAL_SHORT_SIDE = 1080
#: Replicate's Gen-4 Image wrapper accepts reference aspect ratios (width / height) in this range.
MIN_ASPECT = 0.5
MAX_ASPECT = 2.0
#: Share of pixels whose Laplacian response defines edge sharpness (see :func:`measure_image`).
EDGE_FRACTION = 0.002
#: Edge sharpness (0–128) below which an image is reported as ``blurry``.
BLUR_THRESHOLD = 20
#: Luminance levels the middle 99.8 % of pixels must span not to be ``low_contrast``. (Not 98 %:
#: a sketch of thin dark lines on a blank page has < 1 % dark pixels and is not low contrast.)
LOW_CONTRAST_SPREAD = 40
#: Luminance at or above which a pixel counts as a clipped highlight, at or below as a clipped
#: shadow, and the share of clipped pixels above which lighting is reported as harsh.
HIGHLIGHT_LEVEL = 250
SHADOW_LEVEL = 5
CLIP_FRACTION = 0.08

# A 4-neighbour Laplacian. ``offset=128`` keeps negative responses (the dark side of an edge) in
# the 8-bit output instead of clipping them to 0, so |response| = |value - 128|, up to 128.
_LAPLACIAN = ImageFilter.Kernel((3, 3), [0, 1, 0, 1, -4, 1, 0, 1, 0], scale=1, offset=128)
# Alpha at or above which a pixel counts as part of the picture rather than of the cut-out.
_OPAQUE_ALPHA = 128


@dataclass(frozen=True)
class QualityWarning:
    """One reason a reference image may give worse Gen-4 results.

    ``code`` is stable and machine-readable (``"small"``, ``"aspect_ratio"``, ``"blurry"``,
    ``"low_contrast"``, ``"harsh_lighting_highlights"``, ``"harsh_lighting_shadows"``);
    ``message`` is one line for people: what is wrong, the measured figure, and what to do.
    """

    code: str
    message: str


@dataclass(frozen=True)
class ImageMetrics:
    """The figures :func:`check_image` judges an image by (exposed for calibration and display).

    Pixel figures are ``None`` when they cannot be measured: an empty or fully transparent
    image has no pixels to judge, and an image under 3×3 px (after masking) has no edges.
    """

    width: int
    height: int
    #: Absolute Laplacian response (0–128) reached by the sharpest :data:`EDGE_FRACTION` of pixels.
    sharpness: int | None
    #: Luminance span between the 0.1st and 99.9th percentile (0–255).
    contrast_spread: int | None
    #: Share (0–1) of pixels at luminance ≥ :data:`HIGHLIGHT_LEVEL` / ≤ :data:`SHADOW_LEVEL`.
    highlight_fraction: float | None
    shadow_fraction: float | None

    @property
    def aspect_ratio(self) -> float | None:
        """Width / height, or ``None`` for an empty image."""
        return self.width / self.height if self.width and self.height else None


def check_image(img: Image.Image) -> list[QualityWarning]:
    """Return quality hints for ``img`` as a Gen-4 Image reference; an empty list means none.

    The image is not modified. Any mode Pillow can open is accepted (RGB, RGBA, P, L, LA, 1,
    CMYK, YCbCr, LAB, HSV, I, I;16, F); transparent pixels of a cut-out are ignored.
    """
    m = measure_image(img)
    warnings: list[QualityWarning] = []
    w, h = m.width, m.height

    short = min(w, h)
    if short < MIN_SHORT_SIDE:
        warnings.append(
            QualityWarning(
                "small",
                f"Image is small: short side is {short} px ({w}x{h}, under {MIN_SHORT_SIDE} px);"
                f" use a reference at least {RECOMMENDED_SHORT_SIDE} px, ideally"
                f" {IDEAL_SHORT_SIDE} px or more, on the short side.",
            )
        )

    ratio = m.aspect_ratio
    if ratio is not None and not MIN_ASPECT <= ratio <= MAX_ASPECT:
        warnings.append(
            QualityWarning(
                "aspect_ratio",
                f"Aspect ratio is {ratio:.2f} ({w}x{h}), outside the {MIN_ASPECT:g}-{MAX_ASPECT:g}"
                " that references must have; crop it closer to the subject.",
            )
        )

    low_contrast = m.contrast_spread is not None and m.contrast_spread < LOW_CONTRAST_SPREAD
    if low_contrast:
        warnings.append(
            QualityWarning(
                "low_contrast",
                f"Low contrast: 99.8% of pixels span only {m.contrast_spread} of 256 brightness"
                f" levels (want {LOW_CONTRAST_SPREAD} or more); the subject may not stand out -"
                " use a clearer, better-lit shot or raise the contrast.",
            )
        )

    # The Laplacian response scales with contrast, so a washed-out image scores as "blurry" however
    # well it is focused; low_contrast already names the real problem, so don't pile on.
    if m.sharpness is not None and m.sharpness < BLUR_THRESHOLD and not low_contrast:
        warnings.append(
            QualityWarning(
                "blurry",
                f"Image looks blurry: edge sharpness {m.sharpness} (crisp images score"
                f" {BLUR_THRESHOLD} or more, up to 128); use an in-focus shot without motion blur"
                " that has not been upscaled.",
            )
        )

    if m.highlight_fraction is not None and m.highlight_fraction > CLIP_FRACTION:
        warnings.append(
            QualityWarning(
                "harsh_lighting_highlights",
                f"Harsh lighting: {m.highlight_fraction:.1%} of pixels are blown-out highlights"
                f" (brightness {HIGHLIGHT_LEVEL}+ of 255, limit {CLIP_FRACTION:.0%}); use softer,"
                " even light or lower the exposure (ignore this for a deliberate white backdrop).",
            )
        )
    if m.shadow_fraction is not None and m.shadow_fraction > CLIP_FRACTION:
        warnings.append(
            QualityWarning(
                "harsh_lighting_shadows",
                f"Harsh lighting: {m.shadow_fraction:.1%} of pixels are crushed shadows"
                f" (brightness {SHADOW_LEVEL} or less of 255, limit {CLIP_FRACTION:.0%}); use"
                " softer, even light or raise the exposure (ignore this for a deliberate black"
                " backdrop).",
            )
        )
    return warnings


def measure_image(img: Image.Image) -> ImageMetrics:
    """Measure the figures :func:`check_image` uses, on a downscaled grayscale copy of ``img``."""
    w, h = img.size
    if w == 0 or h == 0:
        return ImageMetrics(w, h, None, None, None, None)

    lum, opaque = _analysis_copy(img)
    lum_hist = lum.histogram(mask=opaque)
    total = sum(lum_hist)
    if total == 0:  # fully transparent: nothing to judge
        return ImageMetrics(w, h, None, None, None, None)

    lo = _percentile(lum_hist, 0.001)
    hi = _percentile(lum_hist, 0.999)
    return ImageMetrics(
        width=w,
        height=h,
        sharpness=_sharpness(lum, opaque),
        contrast_spread=hi - lo,
        highlight_fraction=sum(lum_hist[HIGHLIGHT_LEVEL:]) / total,
        shadow_fraction=sum(lum_hist[: SHADOW_LEVEL + 1]) / total,
    )


def _analysis_copy(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Return ``(luminance, opaque_mask)`` at :data:`ANALYSIS_SIZE`; the mask is ``None`` if opaque.

    Only a few cheap passes touch every source pixel (measured on a 6000x4000 image): a mode
    conversion to one 8-bit plane and a resize with ``reducing_gap`` (an integer box reduce, then
    a small filtered resize). Resizing RGBA directly would premultiply alpha over the full image,
    which alone costs ~140 ms, so colour and alpha are split first and shrunk as separate planes.
    """
    im = img
    if im.mode in ("P", "PA", "1"):
        # resize() would scale these with nearest neighbour only, and converting a big palette
        # image costs ~100 ms. So subsample with nearest neighbour to twice the analysis size
        # (cheap, and an unbiased sample for the clipping figures; blur cannot be faked by
        # dropping pixels), convert that, and let _shrink() box-filter the last factor of two.
        limit = 2 * ANALYSIS_SIZE
        if max(im.size) > limit:
            scale = limit / max(im.size)
            size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            im = im.resize(size, Image.Resampling.NEAREST)
        if im.mode == "1":
            im = im.convert("L")
        else:
            has_alpha = im.mode == "PA" or "transparency" in im.info
            im = im.convert("RGBA" if has_alpha else "RGB")
    elif im.mode == "RGBa":  # premultiplied modes have no path to L
        im = im.convert("RGBA")
    elif im.mode == "La":
        im = im.convert("LA")
    elif im.mode.startswith("I;16"):
        # Pillow cannot reduce() I;16 modes and resizes the big-endian I;16B as if it were
        # little-endian (garbage), so widen to 32-bit "I" first; that is one fast pass.
        im = im.convert("I")

    alpha = None
    # Test the mode, not the band names: LAB has an "A" band that is a colour axis, not alpha.
    if im.mode in ("RGBA", "LA"):
        alpha = im.getchannel("A")
        im = im.getchannel("L") if im.mode == "LA" else im.convert("L")
    elif im.mode == "LAB":
        im = im.getchannel("L")  # Pillow cannot convert LAB to RGB, but L* already is lightness

    # Other colour modes (RGB, CMYK, YCbCr, HSV, ...) shrink first: resizing RGB costs about the
    # same as converting it, and converting CMYK at full size is several times slower.
    lum = _to_luminance(_shrink(im))
    opaque = None
    if alpha is not None:
        # Judged after shrinking, which is cheaper than a full-size getextrema(); a transparent
        # speck that averages away is too small to matter anyway.
        alpha = _shrink(alpha)
        if _extrema(alpha)[0] < _OPAQUE_ALPHA:
            opaque = alpha.point(lambda a: 255 if a >= _OPAQUE_ALPHA else 0)
    return lum, opaque


def _extrema(plane: Image.Image) -> tuple[float, float]:
    """Lowest and highest value of a one-band image (Pillow types the many-band form too)."""
    low, high = plane.getextrema()
    assert isinstance(low, (int, float)) and isinstance(high, (int, float))
    return low, high


def _shrink(plane: Image.Image) -> Image.Image:
    """Downscale ``plane`` to fit :data:`ANALYSIS_SIZE` (never upscale)."""
    scale = ANALYSIS_SIZE / max(plane.size)
    if scale >= 1:
        return plane
    size = (max(1, round(plane.width * scale)), max(1, round(plane.height * scale)))
    return plane.resize(size, Image.Resampling.BOX, reducing_gap=2.0)


def _to_luminance(im: Image.Image) -> Image.Image:
    """Return an 8-bit ("L") luminance image for any mode, mapping deep images to 0-255."""
    if im.mode == "L":
        return im
    if im.mode not in ("I", "F"):
        try:
            return im.convert("L")
        except ValueError:
            # A mode with no conversion path to L: its first band is the best guess at brightness.
            return im.getchannel(0).convert("L")
    # convert("L") clips rather than scales, which would turn a 16-bit image white. The mode does
    # not say the intended range, so infer it from the data: 0-1 floats, 8-bit values, 16-bit
    # values, or (anything larger) the maximum itself.
    top = _extrema(im)[1]
    if im.mode == "F" and top <= 1.0:
        full = 1.0
    elif top <= 255:
        full = 255.0
    elif top <= 65535:
        full = 65535.0
    else:
        full = float(top)
    if full != 255.0:
        factor = 255.0 / full
        im = im.point(lambda v: v * factor)
    return im.convert("L")


def _sharpness(lum: Image.Image, opaque: Image.Image | None) -> int | None:
    """Return the |Laplacian| (0–128) reached by the sharpest :data:`EDGE_FRACTION` of pixels.

    Variance of the Laplacian, the textbook blur measure, averages over the whole frame, so it
    calls a flat-coloured drawing with crisp outlines, or a sharp subject on a bokeh background,
    blurry: most of the frame has no edges at all. A high percentile only asks whether *some*
    part of the image has crisp edges, which is what a reference needs.
    """
    if lum.width < 3 or lum.height < 3:
        return None
    lap = lum.filter(_LAPLACIAN)
    # Pillow copies the outermost ring of pixels unfiltered; it would read as huge responses.
    box = (1, 1, lap.width - 1, lap.height - 1)
    lap = lap.crop(box)
    mask = None
    if opaque is not None:
        # Erode the opaque area so the cut-out's own outline (against whatever colour the
        # transparent pixels happen to hold) does not count as a sharp edge of the picture.
        # A 5x5 box blur stays at 255 only where all 25 neighbours are opaque: a 2-px erosion,
        # ~10x faster than MinFilter(5), which sorts every neighbourhood.
        eroded = opaque.filter(ImageFilter.BoxBlur(2)).point(lambda v: 255 if v == 255 else 0)
        mask = eroded.crop(box)
    hist = lap.histogram(mask=mask)
    total = sum(hist)
    if total == 0:
        return None
    folded = [0] * 129
    for value, count in enumerate(hist):
        folded[abs(value - 128)] += count
    # Walk down from the strongest response until EDGE_FRACTION of the pixels are covered.
    needed = EDGE_FRACTION * total
    covered = 0
    for strength in range(128, -1, -1):
        covered += folded[strength]
        if covered >= needed:
            return strength
    return 0  # pragma: no cover - the loop always covers all pixels


def _percentile(hist: list[int], q: float) -> int:
    """Return the smallest level at or below which a share ``q`` of the histogram's pixels lie."""
    needed = q * sum(hist)
    acc = 0
    for level, count in enumerate(hist):
        acc += count
        if acc >= needed and acc > 0:
            return level
    return len(hist) - 1
