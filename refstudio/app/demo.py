"""``refstudio demo``: the whole loop on a fresh machine, with no key and no network.

It copies the quickstart project, draws its character and location with Pillow, starts the
WaveSpeed simulator inside this process, and runs the quickstart workflow through the real
WaveSpeed client against it: a portrait, a composed scene whose best output is promoted into a
new reference, and a refinement generated from that promoted reference.
"""

from __future__ import annotations

import math
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

from ..errors import InputError


def draw_character(path: Path, *, coat: tuple[int, int, int] = (170, 40, 40)) -> Path:
    """A simple, evenly lit full-body character on a plain background (800x1000)."""
    img = Image.new("RGB", (800, 1000), (196, 206, 214))
    d = ImageDraw.Draw(img)
    d.ellipse((300, 90, 500, 310), fill=(236, 196, 160), outline=(40, 30, 30), width=5)
    d.pieslice((290, 70, 510, 260), 180, 360, fill=(60, 40, 30))  # hair
    d.ellipse((355, 180, 375, 200), fill=(30, 30, 30))
    d.ellipse((425, 180, 445, 200), fill=(30, 30, 30))
    d.arc((370, 220, 430, 260), 20, 160, fill=(120, 40, 40), width=4)
    d.polygon([(300, 330), (500, 330), (560, 860), (240, 860)], fill=coat, outline=(30, 20, 20))
    d.line((400, 340, 400, 850), fill=(40, 20, 20), width=4)
    for y in range(400, 820, 70):
        d.ellipse((385, y, 415, y + 30), fill=(220, 190, 90))
    d.rectangle((300, 860, 370, 960), fill=(50, 50, 60))
    d.rectangle((430, 860, 500, 960), fill=(50, 50, 60))
    img = img.filter(ImageFilter.SMOOTH)
    img.save(path)
    return path


def draw_location(path: Path, *, seed: int = 7) -> Path:
    """A tavern interior: wooden walls, a hearth, tables (1600x900)."""
    rng = random.Random(seed)
    img = Image.new("RGB", (1600, 900), (92, 60, 38))
    d = ImageDraw.Draw(img)
    for x in range(0, 1600, 80):  # planks
        shade = 80 + rng.randint(-12, 12)
        d.rectangle((x, 0, x + 78, 600), fill=(shade + 30, shade, shade - 30))
    d.rectangle((0, 600, 1600, 900), fill=(70, 48, 30))
    d.rectangle((620, 260, 980, 600), fill=(60, 60, 64))  # hearth
    d.rectangle((680, 380, 920, 600), fill=(25, 20, 20))
    for i in range(9):
        cx = 800 + 90 * math.sin(i)
        d.polygon([(cx - 40, 600), (cx, 430 + 10 * i), (cx + 40, 600)], fill=(250, 150 + 8 * i, 40))
    for tx in (180, 1180):
        d.ellipse((tx, 640, tx + 260, 720), fill=(120, 80, 50), outline=(40, 25, 15), width=4)
        d.rectangle((tx + 115, 700, tx + 145, 860), fill=(90, 60, 40))
    for lx in (200, 1400):
        d.ellipse((lx - 30, 120, lx + 30, 180), fill=(255, 220, 140))
    img.save(path)
    return path


def draw_courtyard(path: Path) -> Path:
    """A stone courtyard with a well and an arch (1600x900)."""
    img = Image.new("RGB", (1600, 900), (150, 180, 205))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, 1600, 520), fill=(165, 160, 150))
    for y in range(0, 520, 60):
        for x in range((y // 60) % 2 * 60, 1600, 120):
            d.rectangle((x, y, x + 116, y + 56), outline=(120, 115, 105), width=3)
    d.rectangle((620, 180, 980, 520), fill=(70, 65, 60))
    d.pieslice((620, 80, 980, 280), 180, 360, fill=(70, 65, 60))
    d.rectangle((0, 520, 1600, 900), fill=(125, 118, 104))
    d.ellipse((660, 620, 940, 760), fill=(95, 90, 85), outline=(50, 45, 40), width=6)
    d.ellipse((700, 640, 900, 730), fill=(40, 60, 80))
    img.save(path)
    return path


SOURCES: dict[str, Callable[[Path], Path]] = {
    "mara.png": draw_character,
    "tavern.png": draw_location,
    "courtyard.png": draw_courtyard,
}


def draw_sources(folder: Path) -> list[Path]:
    """Draw every example reference image into ``folder`` (skipping ones already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name, draw in SOURCES.items():
        target = folder / name
        if not target.exists():
            draw(target)
        made.append(target)
    return made


def quickstart_folder() -> Path:
    """The quickstart example: shipped in the wheel, or the repository's projects/ folder."""
    here = Path(__file__).resolve().parents[1]  # the refstudio package
    for candidate in (here / "_examples" / "quickstart", here.parent / "projects" / "quickstart"):
        if (candidate / "workflows").is_dir():
            return candidate
    raise FileNotFoundError("the quickstart example is missing from this installation")


@dataclass(frozen=True)
class DemoResult:
    project: Path
    report: Any
    stats: dict[str, Any]


def run_demo(target: Path, say: Callable[[str], None] = print) -> DemoResult:
    """Copy the quickstart to ``target`` and run its workflow against an in-process simulator."""
    from ..simulator import Simulator, SimulatorConfig
    from .studio import Studio

    source = quickstart_folder()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        # The demo copies and draws files by fixed names: never into a folder of the user's.
        raise InputError(f"{target} already holds files; the demo needs a new or empty folder",
                         hint="name a new folder, e.g. `refstudio demo refstudio-demo-2`")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("refstudio.toml", "workflows", "templates"):
        src = source / name
        if src.is_dir():
            shutil.copytree(src, target / name)
        else:
            shutil.copy2(src, target / name)
    (target / "media").mkdir(exist_ok=True)
    draw_sources(target / "sources")
    say(f"copied the quickstart to {target} and drew its reference images in sources/")
    config = SimulatorConfig(latency=0.4, jitter=0.2, key="demo-key", seed=1)
    with Studio.open(target) as studio, Simulator(config) as sim:
        # simulated: the simulator's work is free, so the library records it at no cost.
        studio.provider_options["wavespeed"] = {"api_key": "demo-key", "base_url": sim.base_url,
                                                "simulated": True}

        def on_step(step_id: str, state: str, detail: str) -> None:
            if state in ("completed", "reused", "paused", "failed", "blocked"):
                say(f"  step {step_id}: {state} {detail}".rstrip())

        say(f"running workflows/quickstart.toml through the WaveSpeed client against a local "
            f"simulator at {sim.base_url} (no key, no network)")
        report = studio.run_workflow("quickstart", provider="wavespeed", on_step=on_step)
        stats = sim.stats()
    say(f"simulator: {stats['submits_accepted']} paid submits, {stats['polls']} polls, "
        f"{stats['uploads']} uploads (each reference image uploaded once)")
    return DemoResult(target, report, stats)
