"""Project-level verbs: init, doctor."""

from pathlib import Path
from typing import Annotated

import typer

from ._common import console, print_json, state


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("doctor")(doctor)


def init(
    directory: Annotated[Path, typer.Argument(help="Folder to make the project in.")] = Path("."),
    name: Annotated[str | None, typer.Option(help="Project name (default: folder name).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a project: refstudio.toml, library.db, media/, templates/, workflows/."""
    from ..app.studio import Studio

    with Studio.init(directory, name=name) as studio:
        root = studio.root
    if as_json:
        print_json({"project": str(root)})
        return
    console().print(f"Created project [bold]{root}[/bold]")
    console().print("Next: add a reference with  refstudio ref add NAME IMAGE --kind character")


#: Findings of one kind listed one by one in the text report; the rest are counted.
_SHOWN_PER_KIND = 10


def doctor(
    fix: Annotated[
        bool, typer.Option("--fix", help="Make the safe repairs: remove stale temporary files, "
                           "adopt orphan images as @recovered, create a missing library.db.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check the library and media/ agree: database, schema, files and their hashes, orphans."""
    from ..app.doctor import run_doctor
    from ..errors import StorageError

    report = run_doctor(state.project, fix=fix)
    if as_json:
        print_json(report.to_dict())
    else:
        out = console()
        out.print(f"project {report.project}: database {report.database}, "
                  f"{report.assets_checked} asset(s) checked", markup=False)
        shown: dict[str, int] = {}
        for finding in report.findings:
            shown[finding.kind] = shown.get(finding.kind, 0) + 1
            if shown[finding.kind] <= _SHOWN_PER_KIND:
                mark = "fixed" if finding.fixed else finding.severity
                out.print(f"  {mark}: {finding.message}", markup=False)
        for kind, count in shown.items():
            if count > _SHOWN_PER_KIND:
                out.print(f"  … and {count - _SHOWN_PER_KIND} more {kind} finding(s) "
                          "(--json lists all)", markup=False)
        if not report.findings:
            out.print("  everything is in order", markup=False)
    if report.problems:
        raise StorageError(f"doctor found {len(report.problems)} problem(s) in {report.project}",
                           hint=None if fix else "`refstudio doctor --fix` repairs what can be "
                                "repaired safely; the rest needs a backup")
