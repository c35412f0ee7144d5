"""``refstudio.__all__`` is exactly the public API, and the CLI stays light to import."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap

import pytest

import refstudio
from refstudio import errors

# Module-level names of refstudio/__init__.py that are plumbing, not API.
PLUMBING = {"annotations", "importlib", "TYPE_CHECKING", "Any"}
HEAVY = ("sqlmodel", "sqlalchemy", "httpx", "PIL")


def public_names() -> set[str]:
    """Every public name the package holds once all its lazy exports are resolved."""
    for name in refstudio.__all__:
        getattr(refstudio, name)
    return {
        name
        for name, value in vars(refstudio).items()
        if (not name.startswith("_") or name == "__version__")
        and not inspect.ismodule(value)
        and name not in PLUMBING
    }


def test_all_is_exactly_the_public_names() -> None:
    assert len(refstudio.__all__) == len(set(refstudio.__all__))
    assert set(refstudio.__all__) == public_names()
    assert dir(refstudio) == sorted(refstudio.__all__)


def test_every_name_resolves_to_a_refstudio_object() -> None:
    for name in refstudio.__all__:
        value = getattr(refstudio, name)
        if name == "__version__":
            assert isinstance(value, str) and value.count(".") >= 2
            continue
        assert inspect.isclass(value) or inspect.isfunction(value), name
        assert value.__name__ == name
        assert value.__module__.startswith("refstudio."), name


def test_the_core_api_is_exported() -> None:
    for name in ("Studio", "ReferenceInfo", "ImageInfo", "AddedImage", "RefstudioError"):
        assert name in refstudio.__all__


def test_every_error_class_is_exported() -> None:
    classes = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, errors.RefstudioError)
    }
    assert classes <= set(refstudio.__all__)
    for name in classes:
        assert getattr(refstudio, name) is getattr(errors, name)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _ = refstudio.NoSuchThing  # type: ignore[attr-defined]
    assert not hasattr(refstudio, "Library")  # internal, not exported


def heavy_modules_after(code: str) -> list[str]:
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        heavy = {HEAVY!r}
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_cli_is_light() -> None:
    assert heavy_modules_after("import refstudio.cli") == []
    assert heavy_modules_after("import refstudio") == []


def test_help_is_light() -> None:
    loaded = heavy_modules_after(
        """
        import contextlib, io, sys
        sys.argv = ["refstudio", "--help"]
        from refstudio.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main()
        assert "ref" in out.getvalue()
        """
    )
    assert loaded == []


def test_the_check_can_see_heavy_imports() -> None:
    """Guard: the probe does notice a heavy import."""
    assert "sqlalchemy" in heavy_modules_after("import refstudio.storage.database")
