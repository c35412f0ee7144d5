"""The root command lists its commands from a static table and builds only the one that runs.

``refstudio --help`` must not import every command module (issue 12): the root lists each
command from :data:`refstudio.cli.COMMANDS`. These tests keep that table true to the modules (a
command missing from it, or a changed first line of help, fails here) and keep the root help
exactly the text it was before the table existed (``fixtures/cli_root_help.txt``, printed by
the eagerly built CLI at 80 columns).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from conftest import run_cli
from typer.core import TyperCommand, TyperGroup

import refstudio.cli
from refstudio.cli import COMMANDS, app
from refstudio.cli._lazy import ModuleBuilder

ROOT_HELP = Path(__file__).parent / "fixtures" / "cli_root_help.txt"
MODULES = sorted({listed.module for listed in COMMANDS.values()})


def built(module: str) -> dict[str, Any]:
    return ModuleBuilder(rich_markup_mode=None, suggest_commands=True)(module)


def command_modules() -> list[str]:
    """Every module of refstudio.cli that registers commands (has a ``register(app)``)."""
    out = []
    for info in pkgutil.iter_modules(refstudio.cli.__path__):
        module = importlib.import_module(f"refstudio.cli.{info.name}")
        if callable(getattr(module, "register", None)):
            out.append(info.name)
    return sorted(out)


def test_every_command_module_is_in_the_table() -> None:
    assert command_modules() == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_the_table_names_each_command_a_module_builds(module: str) -> None:
    listed = sorted(name for name, entry in COMMANDS.items() if entry.module == module)
    assert listed == sorted(built(module))


@pytest.mark.parametrize("module", MODULES)
def test_each_listed_summary_shortens_like_the_real_help(module: str) -> None:
    """The stand-in listed for a command gives the same one-line help at every width."""
    for name, command in built(module).items():
        stand_in = TyperCommand(name, help=COMMANDS[name].summary)
        assert not command.hidden and not command.deprecated, name
        expected = [command.get_short_help_str(limit) for limit in range(10, 250)]
        got = [stand_in.get_short_help_str(limit) for limit in range(10, 250)]
        assert got == expected, (
            f"COMMANDS[{name!r}].summary is not the first paragraph of its help: "
            f"{' '.join((command.help or '').split(chr(10) * 2)[0].split())!r}")


def help_text(group: TyperGroup, width: int) -> str:
    ctx = group.make_context("refstudio", [], resilient_parsing=True, terminal_width=width,
                             max_content_width=width)
    return group.get_help(ctx)


@pytest.mark.parametrize("width", [50, 66, 80, 120, 200])
def test_the_root_help_lists_what_the_built_commands_would(width: int) -> None:
    """At any width, the lazy root's help equals that of the same root with every command
    built, so a summary can never show more or less than the command's own help."""
    lazy = typer.main.get_command(app)
    assert isinstance(lazy, TyperGroup)
    every = {name: command for module in MODULES for name, command in built(module).items()}
    eager = TyperGroup(name=lazy.name, params=lazy.params, help=lazy.help,
                       no_args_is_help=True, rich_markup_mode=None,
                       commands={name: every[name] for name in COMMANDS})  # the table's order
    got = help_text(lazy, width)
    assert got == help_text(eager, width)
    assert "storage" in got and "doctor" in got


def test_root_help_is_the_text_it_was() -> None:
    done = run_cli("--help", env={"COLUMNS": "80"})
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == ROOT_HELP.read_text(encoding="utf-8")


def test_no_arguments_print_the_same_help_as_a_usage_error() -> None:
    done = run_cli(env={"COLUMNS": "80"})
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ROOT_HELP.read_text(encoding="utf-8")


def test_a_mistyped_command_still_gets_a_suggestion() -> None:
    done = run_cli("rf")
    assert done.returncode == 2
    assert "Error: No such command 'rf'. Did you mean 'ref'?" in done.stderr


def command_modules_loaded(*args: str) -> list[str]:
    """The command modules imported by ``refstudio ARGS`` (run through ``main()``)."""
    code = (
        "import contextlib, io, json, sys\n"
        f"sys.argv = ['refstudio', *{list(args)!r}]\n"
        "from refstudio.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('refstudio.cli.'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.splitlines()[-1])
    return sorted(name.removeprefix("refstudio.cli.") for name in loaded
                  if name.removeprefix("refstudio.cli.") in MODULES)


def test_root_help_imports_no_command_module() -> None:
    assert command_modules_loaded("--help") == []
    assert command_modules_loaded() == []


def test_a_group_help_imports_only_its_module() -> None:
    assert command_modules_loaded("ref", "--help") == ["ref"]
    assert command_modules_loaded("config", "--help") == ["tools_cmds"]
