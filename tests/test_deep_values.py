"""Values nested thousands of levels deep: one clear error, never a RecursionError traceback.

Python's JSON decoder and tomllib recurse, so ``[[[[…]]]]`` 5,000 deep ended every reader of a
user's JSON or TOML in a traceback: ``--var k:=``, ``--vars`` files, workflow files,
refstudio.toml and pack manifests.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from conftest import run_cli, snapshot_project

from refstudio import Studio
from refstudio.app.project import load_config
from refstudio.errors import ConfigError, InputError, ParameterError, WorkflowError
from refstudio.prompts import parse_var_assignments
from refstudio.prompts.templates import MAX_VAR_DEPTH, load_vars_file

DEEP = "[" * 5000 + "]" * 5000


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_var_assignment_depth_is_bounded() -> None:
    assert parse_var_assignments([f"d:={nested(MAX_VAR_DEPTH)}"])["d"]
    for depth in (MAX_VAR_DEPTH + 1, 5000):
        with pytest.raises(ParameterError, match="nested more than"):
            parse_var_assignments([f"d:={nested(depth)}"])


@pytest.mark.parametrize(("name", "text"), [("v.json", '{"a": ' + DEEP + "}"),
                                             ("v.toml", "a = " + DEEP + "\n")])
def test_vars_file_depth_is_bounded(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    with pytest.raises(ParameterError, match=name):
        load_vars_file(path)


def test_deep_toml_in_project_and_workflow_files(project: Studio) -> None:
    (project.root / "workflows" / "deep.toml").write_text(
        f'[vars]\na = {DEEP}\n[[step]]\nid = "a"\nprompt = "x"\n', "utf-8")
    with pytest.raises(WorkflowError, match="nested too deeply"):
        project.plan_workflow("deep")
    toml = project.root / "refstudio.toml"
    toml.write_text(toml.read_text("utf-8") + f"deep = {DEEP}\n", "utf-8")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(project.root)


def test_deep_pack_manifest(project: Studio, tmp_path: Path) -> None:
    pack = tmp_path / "deep.zip"
    with zipfile.ZipFile(pack, "w") as zf:
        zf.writestr("manifest.json", DEEP)
    with pytest.raises(InputError, match="nested too deeply"):
        project.import_pack(pack)


def test_cli_deep_var_is_one_error_line(project: Studio) -> None:
    before = snapshot_project(project.root)
    result = run_cli("render", "{{ d }}", "--var", f"d:={DEEP}", cwd=project.root)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: variable assignment d:=: the value is nested")
    assert snapshot_project(project.root) == before
