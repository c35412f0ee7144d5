"""The architecture, checked: each package imports only from the layers below it.

The layers, top to bottom (``design.md``)::

    cli                      typer commands: thin shells over app (serve starts web)
    web                      the web studio: ASGI routes, as thin over app as the CLI
    app                      Studio / AsyncStudio, the public API
    workflow, gallery        multi-step runs; static pages
    engine                   write-ahead records, uploads, submit, poll, download
    simulator                beside the rest: speaks each provider's protocol (tests, demo)
    library, providers       references, packs, provenance; one package per service
    prompts                  templates, @mentions, resolution, the name rule
    models, storage          what each model takes; database and media store
    errors                   the one exception tree

A module may import its own package and anything on a lower line; an import of a package on the
same line or higher fails this test, whether it sits at the top of a file or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import refstudio

RANK: dict[str, int] = {
    "errors": 0,
    "models": 1,
    "storage": 1,
    "prompts": 2,
    "library": 3,
    "providers": 3,
    "simulator": 4,
    "engine": 5,
    "workflow": 6,
    "gallery": 6,
    "app": 7,
    "web": 8,
    "cli": 9,
}
#: Modules at the package root that are not a layer: the re-exports and the entry point.
ROOT_MODULES = {"__init__", "__main__", "_version"}

PACKAGE = Path(refstudio.__file__).parent


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "refstudio" else None


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target == "refstudio":  # `from refstudio import x`: each name is the target
                found += [(node.lineno, f"refstudio.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, target) for line, target in found if target.startswith("refstudio.")]


def _modules() -> list[tuple[Path, str]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((path, ".".join(parts)))
    return out


def test_every_package_is_a_known_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py")} - ROOT_MODULES
    assert packages | modules == set(RANK), "a new top-level package needs its place in RANK"


@pytest.mark.parametrize(("path", "module"), _modules(), ids=lambda v: str(v))
def test_no_upward_import(path: Path, module: str) -> None:
    own = _layer_of(module)
    if own is None or own in ROOT_MODULES:
        return
    upward = [
        f"{path.name}:{line} imports {target}"
        for line, target in _imports(path, module)
        if (layer := _layer_of(target)) is not None
        and layer != own
        and layer in RANK
        and RANK[layer] >= RANK[own]
    ]
    assert upward == []
