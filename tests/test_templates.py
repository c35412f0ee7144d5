"""Jinja2 prompt templates: rendering, refs, whitespace, and errors with file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from refstudio.errors import ParameterError, TemplateError
from refstudio.prompts.resolve import RefImage, RefRecord
from refstudio.prompts.templates import (
    load_vars_file,
    parse_var_assignments,
    render_string,
    render_template,
)


def rec(name: str, description: str = "", tags: tuple[str, ...] = ()) -> RefRecord:
    img = RefImage(1, "side", True, "0" * 64, "m/1.png", 8, 8)
    return RefRecord(name, "character", description, tags, (img,))


REFS = {"Mara": rec("Mara", "a tall sailor", ("red coat", "scar"))}


class Lookup:
    def __init__(self, records: list[RefRecord]) -> None:
        self.records = {r.name.lower(): r for r in records}
        self.all_names_calls = 0

    def find(self, name: str) -> RefRecord | None:
        return self.records.get(name.lower())

    def all_names(self) -> list[str]:
        self.all_names_calls += 1
        return [r.name for r in self.records.values()]


@pytest.fixture
def tdir(tmp_path: Path) -> Path:
    d = tmp_path / "templates"
    d.mkdir()
    return d


def write(d: Path, name: str, text: str) -> None:
    (d / name).parent.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(text, encoding="utf-8")


# ---------------------------------------------------------------- rendering


def test_render_string_variables_and_mentions() -> None:
    assert render_string("@{{ hero }} in @{{ place }}", {"hero": "mara", "place": "inn"}) == (
        "@mara in @inn"
    )


def test_whitespace_collapsed_to_one_paragraph() -> None:
    src = "\n  A portrait of {{ who }},\n\n    soft light.\t\n"
    assert render_string(src, {"who": "@mara"}) == "A portrait of @mara, soft light."
    assert render_string(src, {"who": "x"}, collapse_whitespace=False) == (
        "A portrait of x,\n\n    soft light."
    )


def test_no_autoescape() -> None:
    assert render_string("{{ s }}", {"s": "<b> & 'q'"}) == "<b> & 'q'"


def test_render_template_with_include_and_import(tdir: Path) -> None:
    write(tdir, "parts/light.j2", "golden {{ time }} light")
    write(tdir, "macros.j2", "{% macro wear(x) %}wearing {{ x }}{% endmacro %}")
    write(
        tdir,
        "scene.j2",
        "{% import 'macros.j2' as m %}@{{ hero }} {{ m.wear('a coat') }},\n"
        "{% include 'parts/light.j2' %}\n",
    )
    expected = "@mara wearing a coat, golden dusk light"
    variables = {"hero": "mara", "time": "dusk"}
    assert render_template(tdir, "scene", variables) == expected
    assert render_template(str(tdir), "scene.j2", variables) == expected


def test_render_string_can_include_project_templates(tdir: Path) -> None:
    write(tdir, "style.j2", "cinematic, 35mm")
    assert render_string("@mara, {% include 'style.j2' %}", {}, templates_dir=tdir) == (
        "@mara, cinematic, 35mm"
    )


def test_edited_template_is_picked_up(tdir: Path) -> None:
    write(tdir, "t.j2", "one")
    assert render_template(tdir, "t", {}) == "one"
    write(tdir, "t.j2", "two")
    st = (tdir / "t.j2").stat()
    os.utime(tdir / "t.j2", (st.st_atime, st.st_mtime + 5))
    assert render_template(tdir, "t", {}) == "two"


# ---------------------------------------------------------------- refs


def test_refs_data() -> None:
    src = "{{ refs.mara.description }}; {{ refs['MARA'].tags|join(', ') }}; {{ refs.Mara }}"
    assert render_string(src, {}, refs=REFS) == "a tall sailor; red coat, scar; @Mara"


def test_refs_fields_and_defined_test() -> None:
    src = "{{ refs.mara.kind }} {{ refs.mara.labels|list }} {{ refs.nobody is defined }}"
    assert render_string(src, {}, refs=REFS) == "character ['side'] False"
    src = "{{ 'MARA' in refs }} {{ 'nobody' in refs }} {{ refs|list }}"
    assert render_string(src, {}, refs=REFS) == "True False ['Mara']"


def test_refs_names_that_look_like_methods() -> None:
    refs = {"items": rec("items", "a bag of things"), "keys": rec("keys", "brass keys")}
    src = "{{ refs.items.description }}/{{ refs.keys.description }}"
    assert render_string(src, {}, refs=refs) == "a bag of things/brass keys"


def test_refs_are_read_only() -> None:
    tags = ["a"]
    refs = {"Mara": rec("Mara", tags=tags)}  # type: ignore[arg-type]
    with pytest.raises(TemplateError):
        render_string("{{ refs.mara.tags.append('x') }}", {}, refs=refs)
    assert tags == ["a"]
    with pytest.raises(TemplateError, match="not allowed"):
        render_string("{{ refs.mara.__class__ }}", {}, refs=REFS)
    with pytest.raises(TemplateError):
        render_string("{{ refs._records }}", {}, refs=REFS)


def test_unknown_ref_suggests() -> None:
    with pytest.raises(TemplateError) as info:
        render_string("x\n{{ refs.marra.description }}", {}, refs=REFS)
    assert "no reference named 'marra'" in str(info.value)
    assert "did you mean Mara" in str(info.value)
    assert info.value.line == 2


def test_refs_through_lookup_is_lazy() -> None:
    lookup = Lookup([rec("Mara", "a tall sailor")])
    src = "{{ refs.mara.description }} {{ refs.x is defined }}"
    assert render_string(src, {}, refs=lookup) == "a tall sailor False"
    assert lookup.all_names_calls == 0  # a did-you-mean is built only when shown


def test_refs_is_reserved() -> None:
    with pytest.raises(ParameterError, match="reserved"):
        render_string("{{ refs }}", {"refs": 1}, refs=REFS)
    assert render_string("{{ refs }}", {"refs": 1}) == "1"


# ---------------------------------------------------------------- errors


def test_undefined_variable_names_file_and_line(tdir: Path) -> None:
    write(tdir, "scene.j2", "line one\n{% include 'part.j2' %}")
    write(tdir, "part.j2", "a\nb\n{{ hero }}")
    with pytest.raises(TemplateError) as info:
        render_template(tdir, "scene", {})
    err = info.value
    assert (err.source, err.line) == ("part.j2", 3)
    assert str(err) == "part.j2:3: undefined: 'hero' is undefined"


def test_undefined_attribute_in_string() -> None:
    with pytest.raises(TemplateError) as info:
        render_string("a\n\n{{ hero.name }}", {"hero": {}}, name="step 'intro'")
    assert (info.value.source, info.value.line) == ("step 'intro'", 3)
    assert "undefined" in str(info.value)


def test_syntax_error(tdir: Path) -> None:
    write(tdir, "bad.j2", "ok\n\n{{ a b }}")
    with pytest.raises(TemplateError) as info:
        render_template(tdir, "bad", {"a": 1})
    assert (info.value.source, info.value.line) == ("bad.j2", 3)
    assert str(info.value).startswith("bad.j2:3: syntax error: ")


def test_syntax_error_in_included_file(tdir: Path) -> None:
    write(tdir, "main.j2", "{% include 'part.j2' %}")
    write(tdir, "part.j2", "ok\n{% if x %}\nno end")
    with pytest.raises(TemplateError) as info:
        render_template(tdir, "main", {"x": 1})
    assert info.value.source == "part.j2"
    assert info.value.line is not None
    assert "'endif'" in str(info.value)


def test_syntax_error_in_string() -> None:
    with pytest.raises(TemplateError) as info:
        render_string("{{ a b }}", {"a": 1})
    assert (info.value.source, info.value.line) == ("<prompt>", 1)


@pytest.mark.parametrize(
    "src",
    [
        "{{ ''.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ 'x' * 1000000 }}",
        "{{ 10 ** 100000 }}",
        "{% set l = [1] %}{{ l.append(2) }}",
    ],
)
def test_sandbox(src: str) -> None:
    with pytest.raises(TemplateError) as info:
        render_string("fine\n" + src, {})
    assert info.value.line == 2


def test_other_runtime_error() -> None:
    with pytest.raises(TemplateError, match="ZeroDivisionError") as info:
        render_string("{{ 1 / 0 }}", {})
    assert info.value.line == 1


def test_missing_template_lists_available(tdir: Path) -> None:
    write(tdir, "a.j2", "a")
    write(tdir, "sub/b.j2", "b")
    write(tdir, "notes.txt", "not a template")
    with pytest.raises(TemplateError) as info:
        render_template(tdir, "c", {})
    assert str(info.value) == (
        "c.j2: template 'c.j2' not found (available templates: a.j2, sub/b.j2)"
    )


def test_missing_include_points_at_include_line(tdir: Path) -> None:
    write(tdir, "a.j2", "x\n{% include 'gone.j2' %}")
    with pytest.raises(TemplateError) as info:
        render_template(tdir, "a", {})
    assert (info.value.source, info.value.line) == ("a.j2", 2)
    assert "'gone.j2' not found" in str(info.value)


def test_include_outside_templates_fails(tdir: Path) -> None:
    (tdir.parent / "secret").write_text("TOP SECRET")
    write(tdir, "a.j2", "{% include '../secret' %}")
    with pytest.raises(TemplateError, match="outside templates/") as info:
        render_template(tdir, "a", {})
    assert "TOP SECRET" not in str(info.value)
    with pytest.raises(TemplateError):
        render_template(tdir, "../secret", {})
    with pytest.raises(TemplateError):
        render_string("{% include '/etc/passwd' %}", {}, templates_dir=tdir)


def test_symlink_out_of_templates_fails(tdir: Path) -> None:
    (tdir.parent / "secret.j2").write_text("TOP SECRET")
    try:
        (tdir / "link.j2").symlink_to(tdir.parent / "secret.j2")
    except OSError:  # pragma: no cover - platforms without symlinks
        pytest.skip("no symlinks here")
    with pytest.raises(TemplateError, match="outside templates/"):
        render_template(tdir, "link", {})


def test_include_without_templates_dir() -> None:
    with pytest.raises(TemplateError, match="not found"):
        render_string("{% include 'x.j2' %}", {})


# ---------------------------------------------------------------- variables


def test_load_vars_toml_and_json(tmp_path: Path) -> None:
    (tmp_path / "v.toml").write_text('hero = "mara"\nnight = true\n[place]\nname = "inn"\n')
    assert load_vars_file(tmp_path / "v.toml") == {
        "hero": "mara",
        "night": True,
        "place": {"name": "inn"},
    }
    (tmp_path / "v.json").write_text(json.dumps({"hero": "mara", "n": 3}))
    assert load_vars_file(str(tmp_path / "v.json")) == {"hero": "mara", "n": 3}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("v.yaml", "a: 1", "expected a .toml or .json"),
        ("v.toml", "a = ", "invalid TOML"),
        ("v.json", '{\n"a": }', "invalid JSON at line 2"),
        ("v.json", "[1, 2]", "must be an object"),
        ("v.json", '{"bad-name": 1}', "not a valid variable name"),
    ],
)
def test_load_vars_errors(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ParameterError, match=message):
        load_vars_file(tmp_path / name)


def test_load_vars_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="cannot read"):
        load_vars_file(tmp_path / "nope.toml")


def test_parse_var_assignments() -> None:
    assert parse_var_assignments(["hero=mara", "q=a=b", "empty=", "n:=3", "night:=false"]) == {
        "hero": "mara",
        "q": "a=b",
        "empty": "",
        "n": 3,
        "night": False,
    }


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["hero"], "expected key=value"),
        (["=x"], "not a valid variable name"),
        (["1x=2"], "not a valid variable name"),
        (["a-b=2"], "not a valid variable name"),
        (["n:=three"], "not JSON"),
        (["a=1", "a=2"], "given twice"),
    ],
)
def test_parse_var_assignment_errors(items: list[str], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_var_assignments(items)
