"""Hostile Jinja: sandbox escapes, resource exhaustion, recursion, bad files; exit 7."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import plant as p
from .harness import Base, Case, check, params


def inline(cid: str, text: str, pattern: str = "", code: int | tuple[int, ...] = 7,
           **kw: object) -> Case:
    return Case(f"inline-{cid}", ("render", text), code, pattern, **kw)  # type: ignore[arg-type]


def from_file(cid: str, text: str | bytes, pattern: str = "", code: int | tuple[int, ...] = 7,
              **kw: object) -> Case:
    return Case(f"file-{cid}", ("render", "-t", "hostile"), code, pattern,
                setup=p.template("hostile.j2", text), **kw)  # type: ignore[arg-type]


CASES = [
    # -- sandbox escapes --
    inline("subclasses", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "not allowed"),
    inline("globals-os", "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
           "not allowed"),
    inline("self-globals", "{{ self.__init__.__globals__ }}", ""),
    inline("format-escape", "{{ '{0.__class__}'.format(1) }}", "not allowed"),
    inline("namespace-class", "{% set x = namespace(a=1) %}{{ x.__class__ }}", "not allowed"),
    inline("attr-filter", "{{ ''|attr('__class__') }}", ""),
    inline("config", "{{ config.items() }}", "config"),
    inline("import-os", "{% import 'os' as os %}{{ os }}", ""),
    # -- resource exhaustion --
    inline("lipsum-million", "{{ lipsum(1000000) }}", "", timeout=10),
    inline("range-billion", "{% for i in range(10**9) %}x{% endfor %}", "range"),
    inline("string-billion", "{{ 'a'*10**9 }}", "100000"),
    inline("list-product", "{{ [1]*100000*100000 }}", "100000"),
    inline("join-repeat", "{{ range(10)|join(',') * 10**6 }}", "100000"),
    inline("huge-exponent", "{{ 10**100000 }}", "exponent"),
    inline("nested-loops", "{% for a in range(99999) %}{% for b in range(99999) %}"
           "{% endfor %}{% endfor %}", "", timeout=10),
    inline("huge-output", "{% for a in range(99999) %}{{ lipsum(5) }}{% endfor %}", "",
           code=(4, 7), timeout=10),
    inline("macro-recursion", "{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}",
           "recursion|nested more than"),
    # -- ordinary mistakes --
    inline("undefined", "{{ hero }} at dawn", "hero"),
    inline("undefined-attribute", "{{ refs.nobody.description }}", "nobody"),
    inline("syntax", "{{ unclosed", "syntax"),
    inline("bad-tag", "{% for %}", "syntax|expected"),
    inline("division-by-zero", "{{ 1/0 }}", "division"),
    inline("include-outside", "{% include '../refstudio.toml' %}", "outside"),
    inline("include-absolute", "{% include '/etc/passwd' %}", "passwd"),
    inline("include-missing", "{% include 'nope.j2' %}", "nope"),
    Case("gen-undefined", ("gen", "{{ hero }} at dawn"), 7, "hero", key=True),
    # -- template files --
    Case("template-missing", ("render", "-t", "nope"), 7, "nope"),
    Case("template-escape", ("render", "-t", "../refstudio"), 7, "refstudio"),
    Case("template-absolute", ("render", "-t", "/etc/passwd"), 7, "passwd"),
    Case("gen-template-missing", ("gen", "-t", "nope"), 7, "nope", key=True),
    from_file("undefined", "@mara {{ mood }}\n", "mood"),
    from_file("not-utf8", b"@mara \xff\xfe {{ x }}\n", "hostile"),
    from_file("self-include", "{% include 'hostile.j2' %}\n", "hostile|recursion"),
    from_file("include-escape", "{% include '../library.db' %}\n", "outside"),
    from_file("extends-missing", "{% extends 'base.j2' %}\n", "base"),
    Case("template-directory", ("render", "-t", "dir"), 7, "dir",
         setup=p.folder("templates/dir.j2", where="proj")),
    Case("template-fifo", ("render", "-t", "pipe"), 7, "pipe",
         setup=p.fifo("templates/pipe.j2", where="proj")),
    Case("template-dev-zero", ("render", "-t", "zero"), 7, "zero",
         setup=p.symlink("templates/zero.j2", "/dev/zero", where="proj")),
    Case("template-link-outside", ("render", "-t", "passwd"), 7, "passwd",
         setup=p.symlink("templates/passwd.j2", "/etc/passwd", where="proj")),
]


#: Run with REFSTUDIO_HOSTILE=all (see harness.ALL): more variants of the paths above.
EXTENDED = {
    "file-extends-missing", "file-include-escape", "file-undefined", "gen-template-missing",
    "inline-attr-filter", "inline-bad-tag", "inline-config", "inline-division-by-zero",
    "inline-format-escape", "inline-huge-exponent", "inline-huge-output", "inline-import-os",
    "inline-include-absolute", "inline-include-missing", "inline-join-repeat",
    "inline-list-product", "inline-namespace-class", "inline-self-globals", "inline-syntax",
    "inline-undefined", "inline-undefined-attribute", "template-absolute", "template-directory",
    "template-missing",
}


@pytest.mark.parametrize("case", params(CASES, EXTENDED))
def test_bad_template(case: Case, base: Base, tmp_path: Path) -> None:
    check(case, base, tmp_path)
