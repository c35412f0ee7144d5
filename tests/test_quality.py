"""Tests for refstudio.library.quality: every hint fires on an image drawn to have that flaw,
and only then.

The images are drawn with Pillow (shapes, text, noise) rather than stored, so the calibration the
thresholds rely on is visible here: a detailed drawing against the same drawing Gaussian-blurred,
and a flat-coloured cartoon with crisp outlines that a frame-wide blur measure would misjudge.
"""

from __future__ import annotations

import functools
import random

import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from refstudio.library.quality import (
    BLUR_THRESHOLD,
    CLIP_FRACTION,
    LOW_CONTRAST_SPREAD,
    QualityWarning,
    check_image,
    measure_image,
)


def detailed(width: int = 1024, height: int = 768, seed: int = 1) -> Image.Image:
    """A busy, sharp, evenly lit picture: gradient, outlined discs, lines of text, some noise."""
    return _detailed(width, height, seed).copy()  # a fresh copy: tests draw on it


@functools.lru_cache(maxsize=8)
def _detailed(width: int, height: int, seed: int) -> Image.Image:
    rnd = random.Random(seed)
    img = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(25):
        x, y, r = rnd.randrange(width), rnd.randrange(height), rnd.randrange(20, 150)
        colour = (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=(0, 0, 0), width=2)
    font = ImageFont.load_default(size=28)
    for line in range(10):
        grey = rnd.randrange(256)
        draw.text((30, 30 + line * 70), "Reference 0123 @hero", fill=(grey,) * 3, font=font)
    noise = Image.effect_noise((width, height), 30).convert("RGB")
    return Image.blend(img, noise, 0.25)


def cartoon(width: int = 1024, height: int = 768) -> Image.Image:
    """A flat-coloured drawing: big areas of one colour, crisp dark outlines, no texture."""
    img = Image.new("RGB", (width, height), (120, 190, 240))
    draw = ImageDraw.Draw(img)
    cx, cy = width // 2, height // 2
    ground = (0, height * 2 // 3, width, height)
    draw.rectangle(ground, fill=(90, 170, 70), outline=(0, 0, 0), width=4)
    face = (cx - 180, cy - 260, cx + 180, cy + 100)
    draw.ellipse(face, fill=(250, 210, 170), outline=(20,) * 3, width=5)
    draw.ellipse((cx - 90, cy - 120, cx - 40, cy - 70), fill=(255,) * 3, outline=(0,) * 3, width=4)
    draw.ellipse((cx + 40, cy - 120, cx + 90, cy - 70), fill=(255,) * 3, outline=(0,) * 3, width=4)
    draw.arc((cx - 80, cy - 40, cx + 80, cy + 40), 20, 160, fill=(0, 0, 0), width=5)
    triangle = [(100, height * 2 // 3), (250, height // 3), (400, height * 2 // 3)]
    draw.polygon(triangle, fill=(140, 100, 60), outline=(0, 0, 0), width=4)
    return img


def line_drawing(size: int = 1024) -> Image.Image:
    """A sketch: thin 1-px lines and two small dots on an almost empty cream page."""
    img = Image.new("RGB", (size, size), (235, 225, 200))
    draw = ImageDraw.Draw(img)
    c = size // 2
    draw.ellipse((c - 150, c - 200, c + 150, c + 150), outline=(40,) * 3, width=1)
    draw.ellipse((c - 60, c - 80, c - 30, c - 50), fill=(40,) * 3)
    draw.ellipse((c + 30, c - 80, c + 60, c - 50), fill=(40,) * 3)
    draw.arc((c - 60, c - 10, c + 60, c + 50), 20, 160, fill=(40,) * 3, width=1)
    return img


def codes(img: Image.Image) -> list[str]:
    return [w.code for w in check_image(img)]


# -- clean images --------------------------------------------------------------------------------


def test_clean_detailed_image_gives_no_warnings() -> None:
    assert check_image(detailed()) == []


def test_flat_cartoon_with_crisp_outlines_is_not_blurry() -> None:
    # Most of the frame is flat colour, which is what fools a frame-wide Laplacian variance.
    assert check_image(cartoon()) == []


def test_sparse_line_drawing_is_neither_blurry_nor_low_contrast() -> None:
    assert check_image(line_drawing()) == []


# -- one test per warning ------------------------------------------------------------------------


def test_small_image() -> None:
    warnings = check_image(detailed(400, 300))
    assert [w.code for w in warnings] == ["small"]
    assert "300 px" in warnings[0].message
    assert "720" in warnings[0].message


@pytest.mark.parametrize("size", [(1600, 600), (600, 1600)])
def test_aspect_ratio_outside_half_to_two(size: tuple[int, int]) -> None:
    warnings = check_image(detailed(*size))
    assert [w.code for w in warnings] == ["aspect_ratio"]
    ratio = size[0] / size[1]
    assert f"{ratio:.2f}" in warnings[0].message


@pytest.mark.parametrize("size", [(1024, 512), (512, 1024)])
def test_aspect_ratio_of_exactly_two_or_half_is_accepted(size: tuple[int, int]) -> None:
    assert "aspect_ratio" not in codes(detailed(*size))


@pytest.mark.parametrize("make", [detailed, cartoon, line_drawing])
def test_gaussian_blur_radius_6_is_blurry(make) -> None:
    warnings = check_image(make().filter(ImageFilter.GaussianBlur(6)))
    assert [w.code for w in warnings] == ["blurry"]
    assert "edge sharpness" in warnings[0].message


def test_blur_measure_separates_sharp_from_blurred_with_margin() -> None:
    # The threshold sits well inside the gap, not on its edge: sharp drawings measure >= 2x it,
    # their radius-6 blurs <= half of it.
    for make in (detailed, cartoon, line_drawing):
        sharp = measure_image(make()).sharpness
        blurred = measure_image(make().filter(ImageFilter.GaussianBlur(6))).sharpness
        assert sharp is not None and sharp >= 2 * BLUR_THRESHOLD, make.__name__
        assert blurred is not None and blurred <= BLUR_THRESHOLD / 2, make.__name__


def test_clipped_highlights() -> None:
    img = detailed()
    ImageDraw.Draw(img).rectangle((0, 0, 1023, 180), fill=(255, 255, 255))  # ~24 % blown out
    warnings = check_image(img)
    assert [w.code for w in warnings] == ["harsh_lighting_highlights"]
    fraction = measure_image(img).highlight_fraction
    assert fraction is not None and fraction > CLIP_FRACTION
    assert f"{fraction:.1%}" in warnings[0].message


def test_clipped_shadows() -> None:
    img = detailed()
    ImageDraw.Draw(img).rectangle((0, 587, 1023, 767), fill=(0, 0, 0))  # ~24 % crushed
    warnings = check_image(img)
    assert [w.code for w in warnings] == ["harsh_lighting_shadows"]
    fraction = measure_image(img).shadow_fraction
    assert fraction is not None and fraction > CLIP_FRACTION
    assert f"{fraction:.1%}" in warnings[0].message


def test_small_clipped_areas_are_fine() -> None:
    img = detailed()
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, 1023, 40), fill=(255, 255, 255))  # ~5 %
    draw.rectangle((0, 727, 1023, 767), fill=(0, 0, 0))  # ~5 %
    assert check_image(img) == []


def test_low_contrast_is_reported_instead_of_blurry() -> None:
    foggy = Image.blend(detailed(), Image.new("RGB", (1024, 768), (150, 150, 150)), 0.85)
    warnings = check_image(foggy)
    assert [w.code for w in warnings] == ["low_contrast"]
    spread = measure_image(foggy).contrast_spread
    assert spread is not None and spread < LOW_CONTRAST_SPREAD
    assert f"only {spread} of 256" in warnings[0].message


def test_several_problems_are_all_reported() -> None:
    img = detailed(900, 300).filter(ImageFilter.GaussianBlur(6))
    assert codes(img) == ["small", "aspect_ratio", "blurry"]


def test_warnings_are_frozen_one_line_values() -> None:
    (warning,) = check_image(detailed(400, 300))
    assert isinstance(warning, QualityWarning)
    assert "\n" not in warning.message
    with pytest.raises(AttributeError):
        warning.code = "other"  # type: ignore[misc]


# -- modes, transparency, odd sizes --------------------------------------------------------------


def _to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Convert an RGB image to ``mode`` the way a file in that mode would hold it."""
    if mode == "I;16" or mode == "I;16B":
        # Full 16-bit range, as a 16-bit PNG or TIFF holds it; must not read as all-white.
        return img.convert("I").point(lambda v: v * 257).convert(mode)
    if mode == "I":
        return img.convert("I").point(lambda v: v * 257)
    if mode == "F":
        return img.convert("F").point(lambda v: v / 255)  # 0-1 floats
    if mode in ("P", "P+transparency", "PA"):
        # A grey palette holds every level exactly, so the palette path is judged on the same
        # picture. (Quantising colours to 256 posterises a blur into real hard-edged bands.)
        pal = img.convert("L").convert("P")
        if mode == "P+transparency":
            pal.info["transparency"] = 0  # index 0 (black) is barely used by the picture
        return pal.convert("PA") if mode == "PA" else pal
    if mode in ("RGBa", "La"):
        return img.convert({"RGBa": "RGBA", "La": "LA"}[mode]).convert(mode)
    return img.convert(mode)


MODES = [
    "RGB", "RGBA", "RGBX", "RGBa", "L", "LA", "La", "P", "P+transparency", "PA", "1", "CMYK",
    "YCbCr", "LAB", "HSV", "I", "I;16", "I;16B", "F",
]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_any_mode_is_checked_without_error(mode: str) -> None:
    sharp = _to_mode(detailed(), mode)
    blurred = _to_mode(detailed().filter(ImageFilter.GaussianBlur(6)), mode)
    sharp_codes = codes(sharp)
    # Dithering to 1 bit turns the gradient into harsh black and white; everything else in the
    # sharp picture must still measure as clean.
    assert "blurry" not in sharp_codes
    if mode != "1":
        assert sharp_codes == []
        assert codes(blurred) == ["blurry"]


def test_large_palette_image_is_subsampled_consistently() -> None:
    big = detailed().resize((3000, 2250), Image.Resampling.LANCZOS)
    assert check_image(_to_mode(big, "P")) == []
    blurred = big.filter(ImageFilter.GaussianBlur(18))
    assert codes(_to_mode(blurred, "P")) == ["blurry"]


def test_large_image_is_measured_on_a_downscaled_copy() -> None:
    big = detailed().resize((6000, 4500), Image.Resampling.LANCZOS)
    assert check_image(big) == []
    assert big.size == (6000, 4500)


def test_cutout_outline_and_transparent_pixels_are_ignored() -> None:
    # A blurred subject on a fully transparent background whose hidden pixels are black: neither
    # the hard alpha outline nor the black hidden pixels may count.
    subject = cartoon(600, 600).filter(ImageFilter.GaussianBlur(6))
    cutout = Image.new("RGBA", (1024, 768), (0, 0, 0, 0))
    mask = Image.new("L", (600, 600), 0)
    ImageDraw.Draw(mask).ellipse((0, 0, 599, 599), fill=255)
    cutout.paste(subject, (212, 84), mask)
    assert codes(cutout) == ["blurry"]
    sharp_cutout = Image.new("RGBA", (1024, 768), (0, 0, 0, 0))
    sharp_cutout.paste(cartoon(600, 600), (212, 84), mask)
    assert check_image(sharp_cutout) == []


def test_fully_transparent_image_only_gets_geometry_hints() -> None:
    assert check_image(Image.new("RGBA", (1024, 768), (0, 0, 0, 0))) == []
    assert codes(Image.new("RGBA", (300, 900), (0, 0, 0, 0))) == ["small", "aspect_ratio"]


@pytest.mark.parametrize("size", [(0, 0), (0, 10), (1, 1), (2, 2), (3, 1)])
def test_degenerate_sizes_do_not_crash(size: tuple[int, int]) -> None:
    warnings = check_image(Image.new("RGB", size, (128, 128, 128)))
    assert warnings[0].code == "small"


def test_flat_image_is_low_contrast_not_blurry() -> None:
    assert codes(Image.new("RGB", (1024, 768), (128, 128, 128))) == ["low_contrast"]


def test_input_image_is_not_modified() -> None:
    img = _to_mode(detailed(), "P+transparency")
    before = (img.mode, img.size, img.tobytes(), dict(img.info))
    check_image(img)
    assert (img.mode, img.size, img.tobytes(), dict(img.info)) == before
