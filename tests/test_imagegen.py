"""The preview maker: exact size, determinism, visible references, robustness, speed."""

from __future__ import annotations

import io

import gen4_facts as gen4
import pytest
from PIL import Image

from refstudio.providers.offline.previews import encode_png, render_preview


def _png(color: tuple[int, int, int], size: tuple[int, int] = (200, 150)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(("aspect_ratio", "resolution"), sorted(gen4.OUTPUT_SIZES))
def test_exact_size_and_mode(aspect_ratio: str, resolution: str) -> None:
    width, height = gen4.output_size(aspect_ratio, resolution)
    img = render_preview(
        width=width, height=height, prompt="@mara in @tavern", references=[], seed=1
    )
    assert img.size == (width, height)
    assert img.mode == "RGB"


def test_deterministic_and_input_sensitive() -> None:
    refs = [_png((255, 0, 0))]
    a = render_preview(width=640, height=360, prompt="a cat", references=refs, seed=7)
    b = render_preview(width=640, height=360, prompt="a cat", references=refs, seed=7)
    assert a.tobytes() == b.tobytes()
    assert encode_png(a) == encode_png(b)
    other_seed = render_preview(width=640, height=360, prompt="a cat", references=refs, seed=8)
    other_prompt = render_preview(width=640, height=360, prompt="a dog", references=refs, seed=7)
    assert other_seed.tobytes() != a.tobytes()
    assert other_prompt.tobytes() != a.tobytes()


def test_references_are_visible_and_bad_ones_skipped() -> None:
    pure_green = (0, 255, 0)
    plain = render_preview(width=960, height=720, prompt="x", references=[], seed=3)
    with_ref = render_preview(
        width=960, height=720, prompt="x", references=[b"not an image", _png(pure_green)], seed=3
    )
    # The gradient never produces pure green; the pasted reference does, over a large area.
    assert _count(with_ref, pure_green) > 10_000
    assert _count(plain, pure_green) == 0


def test_odd_references_do_not_break_rendering() -> None:
    rgba = io.BytesIO()
    Image.new("RGBA", (50, 400), (10, 20, 30, 0)).save(rgba, "PNG")
    gif = io.BytesIO()
    Image.new("P", (30, 30)).save(gif, "GIF")
    truncated = _png((1, 2, 3))[:40]
    img = render_preview(
        width=720,
        height=1280,
        prompt="π " * 2000,  # far longer than fits: must be ellipsized, not overflow
        references=[rgba.getvalue(), gif.getvalue(), truncated],
        seed=gen4.SEED_MAX,
        label="OFFLINE",
    )
    assert img.size == (720, 1280)


def test_tiny_and_invalid_sizes() -> None:
    assert render_preview(width=8, height=8, prompt="p", references=[], seed=1).size == (8, 8)
    with pytest.raises(ValueError):
        render_preview(width=0, height=10, prompt="p", references=[], seed=1)


def test_png_roundtrip() -> None:
    img = render_preview(width=1280, height=720, prompt="p", references=[], seed=5)
    data = encode_png(img)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as back:
        assert back.size == (1280, 720)
        assert back.convert("RGB").tobytes() == img.tobytes()


def _count(img: Image.Image, color: tuple[int, int, int]) -> int:
    colors = img.getcolors(img.width * img.height) or []
    return sum(n for n, c in colors if c == color)
