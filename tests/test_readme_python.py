"""Every Python example of README.md runs, and prints exactly the output the README shows.

The examples stay in the README (one copy, where readers look) rather than in files the README
would have to repeat: this test reads each ```python block, runs it in a fresh folder holding
what the README says is there (``mara.png``, ``tavern.jpg``, the quickstart project with its
drawn sources), on the offline provider with no key, and compares what it printed with the
```text block that follows it (directly, or after one line of prose ending in a colon).
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from refstudio.app.demo import draw_character, draw_location, draw_sources
from refstudio.app.studio import AsyncStudio, Studio

REPO = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
#: A block that opens with a comment naming a module of the package is a file listing, not a
#: script: tests/test_models_wavespeed.py registers and runs the "Adding a model" one.
MODULE_LISTING = re.compile(r"# refstudio/\S+\.py\n")


@dataclass(frozen=True)
class Example:
    line: int  # where the block starts in README.md, for the test id and failure messages
    code: str
    output: str | None  # the ```text block shown as its output, if any


def readme_examples() -> list[Example]:
    text = (REPO / "README.md").read_text("utf-8")
    blocks = list(FENCE.finditer(text))
    examples = []
    for i, block in enumerate(blocks):
        if block.group(1) != "python" or MODULE_LISTING.match(block.group(2)):
            continue
        output = None
        if i + 1 < len(blocks) and blocks[i + 1].group(1) == "text":
            between = text[block.end():blocks[i + 1].start()].strip()
            if not between or ("\n" not in between and between.endswith(":")):
                output = blocks[i + 1].group(2)
        examples.append(Example(text.count("\n", 0, block.start()) + 1, block.group(2), output))
    return examples


EXAMPLES = readme_examples()


def test_the_readme_has_python_examples_with_output() -> None:
    assert len(EXAMPLES) >= 3
    assert all(e.output for e in EXAMPLES), [e.line for e in EXAMPLES if not e.output]


def _folder_the_readme_assumes(root: Path) -> None:
    draw_character(root / "mara.png")
    draw_location(root / "tavern.jpg")
    quickstart = root / "projects" / "quickstart"
    shutil.copytree(REPO / "projects" / "quickstart", quickstart,
                    ignore=shutil.ignore_patterns("library.db*", "media", "gallery", "sources"))
    draw_sources(quickstart / "sources")


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"README.md:{e.line}" for e in EXAMPLES])
def test_readme_example_prints_what_it_shows(
    example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFSTUDIO_OFFLINE_DIR", str(tmp_path / "offline-cache"))
    _folder_the_readme_assumes(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(example.code, f"README.md:{example.line}", "exec"), namespace)
    finally:
        for value in namespace.values():  # a script may leave its studio open; a test may not
            if isinstance(value, (Studio, AsyncStudio)):
                value.close()
    assert printed.getvalue() == example.output, f"README.md:{example.line}"
