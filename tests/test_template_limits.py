"""The template sandbox's limits: hostile templates fail fast with one TemplateError.

Each case is something an attacker (or a careless template author) can write that, without
limits, runs for minutes or allocates gigabytes. Each must be refused with a TemplateError
naming the limit, bounded in time and memory (asserted by the error, not by a clock: the case
would otherwise not finish, or would die of MemoryError).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_cli

from refstudio.errors import TemplateError
from refstudio.prompts.templates import TemplateLimits, render_string, render_template

BIG = "{% set s = 'x' * 99999 %}"

HOSTILE = {
    # helpers
    "lipsum": "{{ lipsum(1000000) }}",
    "lipsum-words": "{{ lipsum(1, false, 10, 10**9) }}",
    "range": "{% for i in range(10**9) %}{% endfor %}",
    "range-10k+1": "{{ range(10001)|list|length }}",
    "range-huge": "{{ range(10**30)|length }}",
    "join-range": "{{ range(10**7)|join(',') }}",
    # one operator, a huge result
    "str-repeat": "{{ 'a' * 10**9 }}",
    "list-repeat": "{{ [1, 2] * 10**8 }}",
    "bytes-repeat": "{{ 'x'.encode() * 10**9 }}",
    "markup-repeat": "{{ 'x'|safe * 10**9 }}",
    "pow": "{{ 3 ** (10 ** 10) }}",
    "pow-big-base": "{{ (2 ** 1000) ** 1000 }}",
    "int-square-loop": (
        "{% set ns = namespace(x=10**500) %}"
        "{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}"
    ),
    "percent-width": "{{ '%999999999d' % 1 }}",
    "percent-star": "{{ '%*d' % (999999999, 1) }}",
    "percent-precision": "{{ '%.999999999f' % 1.0 }}",
    "format-width": "{{ '{:>999999999}'.format(1) }}",
    "format-nested-width": "{{ '{:>{}}'.format(1, 999999999) }}",
    "format-map-width": "{{ '{a:>999999999}'.format_map({'a': 1}) }}",
    "format-filter": "{{ '%999999999s'|format(1) }}",
    "markup-format": "{{ ('{:>999999999}'|safe).format(1) }}",
    "center": "{{ 'x'|center(999999999) }}",
    "indent": "{{ 'x'|indent(999999999) }}",
    "indent-str": BIG + "{{ ('\n' * 99999)|indent(s) }}",
    "str-ljust": "{{ 'x'.ljust(999999999) }}",
    "str-zfill": "{{ 'x'.zfill(999999999) }}",
    "str-center": "{{ 'x'.center(999999999, '-') }}",
    "expandtabs": "{{ '\t'.expandtabs(999999999) }}",
    "bytes-center": "{{ 'x'.encode().center(999999999) }}",
    "replace-filter": BIG + "{{ s|replace('x', s) }}",
    "replace-method": BIG + "{{ s.replace('x', s) }}",
    "wordwrap-wrapstring": "{{ ('x' * 9999)|wordwrap(1, wrapstring='y' * 9999) }}",
    "batch-fill": "{{ [1]|batch(999999999, 'x')|list }}",
    "slice-count": "{{ range(10)|slice(999999999)|list }}",
    "tojson-indent": "{{ {'a': [1, 2]}|tojson(999999999) }}",
    # growth by repetition
    "concat-doubling": (
        "{% set ns = namespace(s='xx') %}"
        "{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
    ),
    "plus-doubling": (
        "{% set ns = namespace(s='xx') %}"
        "{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"
    ),
    "list-doubling": (
        "{% set ns = namespace(l=[1]) %}"
        "{% for i in range(60) %}{% set ns.l = ns.l + ns.l %}{% endfor %}"
    ),
    "shared-list-doubling": (  # tiny in memory, 2**60 items once printed or compared
        "{% set ns = namespace(l=[1]) %}"
        "{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}"
    ),
    "literal-of-big": BIG + "{{ [s, s, s]|join }}",
    "repeat-of-big": BIG + "{{ ([s] * 10000)|join }}",
    "join-method-of-big": BIG + "{{ ''.join([s] * 10000) }}",
    "dict-of-big": BIG + "{{ dict(a=s, b=s) }}",
    "map-then-list": "{{ range(10000)|map('center', 99999)|list|length }}",
    "map-then-join": "{{ range(10000)|map('center', 999)|join }}",
    "captured-block": (
        BIG + "{% set x %}{% for i in range(10000) %}{{ s }}{% endfor %}{% endset %}{{ x|length }}"
    ),
    "filter-block": BIG
    + "{% filter upper %}{% for i in range(10000) %}{{ s }}{% endfor %}{% endfilter %}",
    "macro-output": BIG
    + "{% macro m() %}{% for i in range(10000) %}{{ s }}{% endfor %}{% endmacro %}{{ m()|length }}",
    "namespace-self": (
        "{% set ns = namespace() %}{% for i in range(100) %}{% set ns.a = ns %}{% endfor %}{{ ns }}"
    ),
    "sum-of-lists": "{{ ([[1, 2, 3]] * 25000)|sum(start=[])|length }}",
    # too much work
    "nested-loops": (
        "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}"
    ),
    "triple-loops": (
        "{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}"
        "{% endfor %}{% endfor %}{% endfor %}"
    ),
    "loop-cycle": (
        "{% for a in range(10000) %}{% for b in range(100) %}{{ loop.cycle('a', 'b') }}"
        "{% endfor %}{% endfor %}"
    ),
    "macro-recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "macro-fork-bomb": (
        "{% macro f(n) %}{% if n < 60 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}"
        "{{ f(0) }}"
    ),
    "caller-recursion": (
        "{% macro f() %}{% call f() %}{% endcall %}{{ caller() }}{% endmacro %}"
        "{% call f() %}{% endcall %}"
    ),
    "recursive-loop": ("{% for x in range(10000) recursive %}{{ loop(range(10000)) }}{% endfor %}"),
    # output
    "output": "{% for i in range(10000) %}{{ 'x' * 99 }}{% endfor %}",
    # what must stay out of reach
    "translate": "{{ 'x'.translate({120: 'y' * 99999}) }}",
    "maketrans": "{{ ''.maketrans('a', 'b') }}",
    "to-bytes": "{{ (1).to_bytes(999999999, 'big') }}",
    "list-append": "{% set l = [] %}{{ l.append(1) }}",
    "dict-update": "{% set d = {} %}{{ d.update(a=1) }}",
    "dunder": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals": "{{ cycler.__init__.__globals__ }}",
    "self-internals": "{{ self._TemplateReference__context }}",
    "mul-method": "{{ 'x'.__mul__(999999999) }}",
}


@pytest.mark.parametrize("source", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_template_is_refused(source: str) -> None:
    with pytest.raises(TemplateError) as info:
        render_string("fine\n" + source, {})
    message = str(info.value)
    assert "over a template limit" in message or "not allowed in a template" in message, message
    assert "\n" not in message
    assert "MemoryError" not in message


def test_limits_name_what_went_over() -> None:
    cases = {
        "{{ lipsum(1000000) }}": "lipsum() of up to 100000000 words; at most 5000",
        "{{ range(10**9)|join }}": "range() of 1000000000 items; at most 10000",
        "{{ 'a' * 10**9 }}": "'*' would be larger than 100000",
        "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}": (
            "more than 200000 steps"
        ),
        "{% for i in range(10000) %}{{ 'x' * 99 }}{% endfor %}": "longer than 65536 characters",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}": "nested more than 64 deep",
    }
    for source, expected in cases.items():
        with pytest.raises(TemplateError, match="over a template limit") as info:
            render_string(source, {})
        assert expected in str(info.value), source


def test_limit_errors_point_at_the_line() -> None:
    with pytest.raises(TemplateError) as info:
        render_string("a\nb\n{{ 'x' * 10**9 }}", {}, name="step 'hero'")
    assert (info.value.source, info.value.line) == ("step 'hero'", 3)


def test_error_messages_stay_short() -> None:
    with pytest.raises(TemplateError) as info:
        render_string("{{ ('y' * 99999)|filesizeformat }}", {})
    assert len(str(info.value)) < 400 and str(info.value).endswith("…")


def test_time_budget_is_checked_between_chunks_and_in_loops() -> None:
    # A zero budget is spent before the first check, wherever that check is.
    no_time = TemplateLimits(seconds=0)
    with pytest.raises(TemplateError, match="ran for more than 0 s"):
        render_string("plain text, one chunk", {}, limits=no_time)
    with pytest.raises(TemplateError, match="ran for more than 0 s"):
        render_string("{% for i in range(100) %}{% endfor %}", {}, limits=no_time)
    with pytest.raises(TemplateError, match="ran for more than 0 s"):
        render_string(
            "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
            "{% set x = f(10) %}",
            {},
            limits=no_time,
        )


def test_steps_count_calls_filters_and_includes(tmp_path: Path) -> None:
    few = TemplateLimits(max_steps=50)
    with pytest.raises(TemplateError, match="more than 50 steps"):
        render_string("{% macro f() %}{% endmacro %}" + "{{ f() }}" * 60, {}, limits=few)
    with pytest.raises(TemplateError, match="more than 50 steps"):
        render_string("{{ 'a'|upper }}" * 60, {}, limits=few)
    (tmp_path / "part.j2").write_text("p")
    with pytest.raises(TemplateError, match="more than 50 steps"):
        render_string("{% include 'part.j2' %}" * 60, {}, templates_dir=tmp_path, limits=few)
    # include bombs: each file includes the next one twice
    for i in range(40):
        (tmp_path / f"b{i}.j2").write_text(f"{{% include 'b{i + 1}.j2' %}}" * 2)
    (tmp_path / "b40.j2").write_text("x")
    with pytest.raises(TemplateError, match="over a template limit"):
        render_template(tmp_path, "b0", {})


def test_limits_are_per_render() -> None:
    loop = "{% for i in range(30) %}{{ i }}{% endfor %}"
    limits = TemplateLimits(max_steps=40)
    for _ in range(5):  # 30 steps each: a budget shared between renders would run out
        assert render_string(loop, {}, limits=limits).startswith("0123")


def test_big_template_file_is_refused_before_reading(tmp_path: Path) -> None:
    (tmp_path / "huge.j2").write_text("x" * 300_000)
    with pytest.raises(TemplateError, match="larger than 262144 bytes"):
        render_template(tmp_path, "huge", {})
    with pytest.raises(TemplateError, match="longer than 262144 characters"):
        render_string("x" * 300_000, {})


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_template_is_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.j2")
    with pytest.raises(TemplateError, match="not a regular file"):
        render_template(tmp_path, "pipe", {})
    with pytest.raises(TemplateError, match="not a regular file"):
        render_string("{% include 'pipe.j2' %}", {}, templates_dir=tmp_path)


# ---------------------------------------------------------------- what still works


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ lipsum(1, false, 3, 4)|wordcount > 0 }}", "True"),
        ("{{ range(10000)|length }}", "10000"),
        ("{{ range(3)|join(', ') }}", "0, 1, 2"),
        ("{{ 'ab' * 3 }} {{ [0] * 2 }} {{ 2 ** 10 }} {{ 7 * 6 }}", "ababab [0, 0] 1024 42"),
        ("{{ '%05.1f|%3d|%s' % (3.14159, 7, [1]) }}", "003.1| 7|[1]"),
        ("{{ '{:*>4}|{:.2f}|{a}'.format('x', 2, a=1) }}", "***x|2.00|1"),
        ("{{ '{a:-^5}'.format_map({'a': 'x'}) }}", "--x--"),
        ("{{ '%s-%s'|format('a', 'b') }} {{ 'x'|center(5) }}.", "a-b x ."),
        ("{{ 'a b c'|replace(' ', '_') }} {{ 'a\tb'.expandtabs(2) }}", "a_b_c a b"),
        ("{{ ['a', 'b']|map('upper')|join('-') }} {{ '-'.join(['x', 'y']) }}", "A-B x-y"),
        ("{{ [[1], [2]]|sum(start=[]) }} {{ [1, 2, 3]|sum }}", "[1, 2] 6"),
        ("{{ range(5)|batch(2)|list }}", "[[0, 1], [2, 3], [4]]"),
        ("{{ range(5)|slice(2)|list }}", "[[0, 1, 2], [3, 4]]"),
        ("{{ range(3)|reverse|list }} {{ {'a': 1}|tojson }}", '[2, 1, 0] {"a": 1}'),
        (
            "{% for x in range(4)|map('string') %}{{ x }}/{{ loop.length }}"
            "{{ '.' if loop.last }} {% endfor %}",
            "0/4 1/4 2/4 3/4.",
        ),
        ("{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% endfor %}", "a=1"),
        ("{% for x in [3, 1, 2]|sort if x > 1 %}{{ x }}{% else %}none{% endfor %}", "23"),
        ("{% for x in [] %}{% else %}none{% endfor %}", "none"),
        (
            "{% for x in [[1, [2]], [3]] recursive %}"
            "{% if x is iterable %}({{ loop(x) }}){% else %}{{ x }}{% endif %}{% endfor %}",
            "(1(2))(3)",
        ),
        (
            "{% macro f(n) %}{% if n %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(9) }}",
            "987654321",
        ),
        (
            "{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }}",
            "10",
        ),
        ("{% set x %}a{{ 1 }}b{% endset %}{{ x ~ '!' }} {{ cycler('a', 'b').next() }}", "a1b! a"),
        ("{% autoescape true %}{{ '<a>' ~ 'b' }}{% endautoescape %}", "&lt;a&gt;b"),
    ],
)
def test_ordinary_templates_still_render(source: str, expected: str) -> None:
    assert render_string(source, {}) == expected


def test_big_but_allowed_values(tmp_path: Path) -> None:
    # Exactly at the limits: a 100,000-character value, a 65,536-character prompt.
    assert len(render_string("{% set s = 'x' * 100000 %}{{ s|length }}", {})) == 6
    assert len(render_string("{{ 'x' * 65536 }}", {})) == 65536
    text = "word " * 20_000
    assert render_string("{{ t|wordcount }}", {"t": text}) == "20000"


# ---------------------------------------------------------------- the CLI


def test_cli_refuses_hostile_template_quickly(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    assert run_cli("init", str(root)).returncode == 0
    r = run_cli("--project", str(root), "render", "{{ lipsum(1000000) }}")
    assert r.returncode == 7, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "over a template limit" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert len(lines) <= 2
