"""Draw the example projects' reference images (Pillow only; nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

from refstudio.app.demo import draw_sources

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    for project in ("quickstart", "storyboard"):
        for path in draw_sources(HERE / project / "sources"):
            print(path.relative_to(HERE.parent))
