"""Benchmark the prompt language: resolution in a 100,000-reference library, template rendering.

Run: ``python benchmarks/bench_prompts.py`` (from the repository root). Each figure is printed
next to a floor measured in the same run (a plain dict lookup; a trivial template), so machines
can be compared by the ratio rather than the raw time.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refstudio.prompts import RefImage, RefRecord, render_string, render_template, resolve

LIBRARY_SIZE = 100_000


class DictLookup:
    """An in-memory ReferenceLookup, as a test or a warm cache would provide."""

    def __init__(self, records: dict[str, RefRecord]) -> None:
        self._records = records

    def find(self, name: str) -> RefRecord | None:
        return self._records.get(name.lower())

    def all_names(self) -> list[str]:
        return [r.name for r in self._records.values()]


def build_library(size: int) -> DictLookup:
    records: dict[str, RefRecord] = {}
    for i in range(size):
        name = f"ref{i:06d}"
        images = (
            RefImage(2 * i, "front", True, f"{i:064x}", f"media/{i}.png", 1024, 1024),
            RefImage(2 * i + 1, "side", False, f"{i + 1:064x}", f"media/{i}s.png", 1024, 1024),
        )
        records[name] = RefRecord(name, "character", f"reference {i}", ("a", "b"), images)
    return DictLookup(records)


def timeit(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and p95 of ``runs`` calls, in microseconds."""
    for _ in range(min(100, runs)):  # warm caches (compiled templates, regexes)
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95)]


def row(label: str, median: float, p95: float) -> None:
    print(f"  {label:<52} median {median:8.1f} us   p95 {p95:8.1f} us")


def main() -> None:
    print(f"building an in-memory library of {LIBRARY_SIZE:,} references ...")
    lookup = build_library(LIBRARY_SIZE)
    prompt = (
        "Cinematic still: @Ref012345 in a long red coat, standing in @ref054321:side at dusk, "
        "holding @ref099999; @ref012345 looks at the camera. Mail me@example.com, price @@ 5."
    )
    print("resolve a 3-reference prompt:")
    row("floor: 3 dict lookups", *timeit(lambda: [lookup.find(n) for n in ("a", "b", "c")], 20000))
    row("resolve()", *timeit(lambda: resolve(prompt, lookup), 20000))
    row("resolve() of a prompt without @", *timeit(lambda: resolve("a calm sea", lookup), 20000))

    with tempfile.TemporaryDirectory() as tmp:
        tdir = Path(tmp)
        (tdir / "trivial.j2").write_text("a calm sea")
        (tdir / "light.j2").write_text("{{ time }} light, {{ lens }}mm lens")
        (tdir / "macros.j2").write_text("{% macro wear(x) %}wearing {{ x }}{% endmacro %}")
        (tdir / "scene.j2").write_text(
            "{% import 'macros.j2' as m %}\n@{{ hero }} {{ m.wear(coat) }},\n"
            "{{ refs[hero].description }},\n  in @{{ place }}:side,\n"
            "{% include 'light.j2' %}\n"
        )
        variables = {"hero": "ref012345", "place": "ref054321", "coat": "a red coat",
                     "time": "golden", "lens": 35}
        print("render templates:")
        row("floor: trivial template file", *timeit(lambda: render_template(tdir, "trivial", {}),
                                                    5000))
        row("floor: trivial inline string", *timeit(lambda: render_string("a calm sea", {}), 5000))
        row("template with import + include + refs", *timeit(
            lambda: render_template(tdir, "scene", variables, refs=lookup), 5000))
        rendered = render_template(tdir, "scene", variables, refs=lookup)
        row("render + resolve (the whole prompt step)", *timeit(
            lambda: resolve(render_template(tdir, "scene", variables, refs=lookup), lookup), 5000))
        print(f"  rendered: {rendered!r}")


if __name__ == "__main__":
    main()
