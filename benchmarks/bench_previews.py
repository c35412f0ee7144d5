"""How long the offline provider takes to draw one 1920x1080 preview, next to its floor.

The floor is what Pillow alone costs for the same output: a blank 1920x1080 RGB image encoded
as PNG the way the previews are. The target is "well under 100 ms" per preview, so the offline
provider never makes a newcomer's first loop feel slow.

    python benchmarks/bench_previews.py [--runs 10]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

from PIL import Image

from refstudio.providers.offline.previews import encode_png, render_preview


def _png(color: tuple[int, int, int], size: tuple[int, int] = (200, 150)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _times(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up: fonts and codecs load once per process
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    refs = [_png((200, 10, 10), (1600, 1200)), _png((10, 200, 10)), _png((10, 10, 200))]
    preview = _times(lambda: render_preview(
        width=1920, height=1080, prompt="p" * 300, references=refs, seed=2), runs)
    floor = _times(lambda: encode_png(Image.new("RGB", (1920, 1080), (40, 40, 40))), runs)
    for name, values in (("preview 1920x1080, 3 refs", preview), ("floor: blank PNG", floor)):
        print(f"{name:28} median {statistics.median(values) * 1000:7.1f} ms   "
              f"best {min(values) * 1000:7.1f} ms")
    print(f"preview / floor (median): {statistics.median(preview) / statistics.median(floor):.2f}")


if __name__ == "__main__":
    main()
