"""A root command group that imports a command's module only when that command is used.

Issue 12 wants ``refstudio --help`` under 100 ms, and importing typer alone takes about 75 ms of
CPU. Importing all eleven command modules and having typer build all 31 commands on every start
took about 37 ms more; so the root lists its commands from a static table (name, module, the
first paragraph of its help) and builds a command, with the rest of its module, on first use.
``tests/test_cli_lazy.py`` checks the table against the commands the modules actually build."""

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, ClassVar, NamedTuple

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup


class Listed(NamedTuple):
    """One root command as ``--help`` lists it, before its module is imported."""

    #: The module under ``refstudio.cli`` whose ``register(app)`` adds the command.
    module: str
    #: The first paragraph of the command's help, whitespace collapsed (click shortens it).
    summary: str


class LazyCommands(MutableMapping[str, Any]):
    """The root's commands by name, in the table's order; a command's module is imported and
    all of its commands built on first access. While :meth:`listing`, a command not yet built
    is a stand-in carrying only its summary, which is all the help list reads."""

    def __init__(self, table: Mapping[str, Listed], build: "ModuleBuilder") -> None:
        self._table = table
        self._build = build
        self._built: dict[str, Any] = {}
        self._listing = False

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            listed = self._table[name]  # KeyError for an unknown name, as a dict says
            if self._listing:
                return TyperCommand(name, help=listed.summary,
                                    rich_markup_mode=self._build.rich_markup_mode)
            self._built.update(self._build(listed.module))
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        raise TypeError("the root's commands come from its table")

    def __iter__(self) -> Iterator[str]:
        yield from self._table
        yield from (name for name in self._built if name not in self._table)

    def __len__(self) -> int:
        return len(self._table) + sum(1 for name in self._built if name not in self._table)

    def __contains__(self, name: object) -> bool:
        return name in self._table or name in self._built

    @contextmanager
    def listing(self) -> Iterator[None]:
        self._listing = True
        try:
            yield
        finally:
            self._listing = False


class ModuleBuilder:
    """Builds the click commands a module registers, with the root's settings (help without
    rich markup, the same suggestions), exactly as the root would have built them itself."""

    def __init__(self, rich_markup_mode: Any, suggest_commands: bool | None) -> None:
        self.rich_markup_mode = rich_markup_mode
        self.settings: dict[str, Any] = {"rich_markup_mode": rich_markup_mode}
        if suggest_commands is not None:  # a setting only newer typers have
            self.settings["suggest_commands"] = suggest_commands

    def __call__(self, module: str) -> dict[str, Any]:
        registrar = importlib.import_module(f"{__package__}.{module}")
        app = typer.Typer(**self.settings)
        registrar.register(app)
        return dict(typer.main.get_group(app).commands)


class LazyGroup(TyperGroup):
    """A typer group whose commands are a :class:`LazyCommands` over :attr:`table`.

    ``ctx`` and ``formatter`` are typed ``Any``: their classes live in click, or in typer's own
    copy of click in recent typers (0.29 here), depending on the typer installed.
    """

    table: ClassVar[Mapping[str, Listed]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        lazy = LazyCommands(self.table, ModuleBuilder(self.rich_markup_mode,
                                                      getattr(self, "suggest_commands", None)))
        lazy.update(self.commands)  # any command added to the root itself, not in the table
        self.lazy_commands = lazy
        self.commands = lazy

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # the names alone: typer's own reads every command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        with self.lazy_commands.listing():
            super().format_commands(ctx, formatter)
