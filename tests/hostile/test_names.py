"""Hostile names, labels, kinds and tags: refused with exit 4 (6 for a name that is not there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import plant as p
from .harness import Base, Case, Setup, check, params

INVALID = "invalid reference name"

#: (case id, name): each breaks the tag rule (3-16 chars, ASCII letter first, then [A-Za-z0-9_]).
BAD_NAMES = [
    ("empty", ""),
    ("too-short", "ab"),
    ("too-long", "a" * 17),
    ("very-long", "x" * 5000),
    ("digit-first", "1abc"),
    ("underscore-first", "_abc"),
    ("hyphen", "ma-ra"),
    ("space", "ma ra"),
    ("dot", "ma.ra"),
    ("accented", "márà"),
    ("cyrillic-confusable", "m\u0430ra"),
    ("fullwidth", "\uff4d\uff41\uff52\uff41"),
    ("combining-accent", "mara\u0301"),
    ("zero-width-space", "ma\u200bra"),
    ("rtl-override", "\u202emara"),
    ("escape-sequence", "ma\x1b[31mra"),
    ("bell", "ma\x07ra"),
    ("newline", "mara\nevil"),
    ("tab", "ma\tra"),
    ("sql-drop", "x'; DROP TABLE reference;--"),
    ("sql-quote", "Robert');DROP"),
    ("path-parent", "../mara"),
    ("path-absolute", "/etc/passwd"),
    ("windows-path", "C:\\mara"),
    ("format-string", "%s%s%n"),
    ("jinja", "{{7*7}}"),
    ("shell", "$(id)"),
    ("at-only", "@"),
    ("double-at", "@@mara"),
]

_good = p.image("good.png")


def _with_good(setup: Setup | None = None) -> Setup:
    return p.steps(_good, p.value("GOOD", lambda ctx: str(ctx.tmp / "good.png")),
                   *([setup] if setup else []))


def _case(cid: str, argv: tuple[str, ...], code: int | tuple[int, ...], pattern: str = "",
          **kw: object) -> Case:
    setup = kw.pop("setup", None)
    return Case(cid, argv, code, pattern, setup=_with_good(setup), **kw)  # type: ignore[arg-type]


CASES = [
    *(_case(f"name-{cid}", ("ref", "add", name, "%GOOD%"), 4, INVALID) for cid, name in BAD_NAMES),
    # -- taken names, ignoring case --
    _case("add-taken", ("ref", "add", "mara", "%GOOD%"), 4, "mara"),
    _case("add-taken-upper", ("ref", "add", "MARA", "%GOOD%"), 4, "mara"),
    _case("add-taken-at", ("ref", "add", "@Hero", "%GOOD%"), 4, "hero"),
    # -- rename --
    _case("rename-onto-taken", ("ref", "rename", "mara", "tavern"), 4, "tavern"),
    _case("rename-onto-taken-case", ("ref", "rename", "mara", "TAVERN"), 4, "tavern"),
    _case("rename-invalid", ("ref", "rename", "mara", "bad name"), 4, INVALID),
    _case("rename-confusable", ("ref", "rename", "mara", "m\u0430ra"), 4, INVALID),
    _case("rename-unknown", ("ref", "rename", "nobody", "somebody"), 6, "nobody"),
    _case("rename-sql", ("ref", "rename", "x'; DROP TABLE reference;--", "abcd"), (4, 6),
          "DROP"),
    # -- verbs on names that are not there --
    _case("show-unknown", ("ref", "show", "marra"), 6, "marra"),
    _case("rm-unknown", ("ref", "rm", "nobody"), 6, "nobody"),
    _case("rm-sql", ("ref", "rm", "mara' OR '1'='1"), (4, 6), "mara"),
    _case("lineage-unknown", ("lineage", "nobody"), 6, "nobody"),
    _case("check-unknown", ("ref", "check", "nobody"), 6, "nobody"),
    _case("edit-unknown", ("ref", "edit", "nobody", "--description", "x"), 6, "nobody"),
    # -- promote to a bad name --
    _case("promote-invalid-name", ("promote", "1:0", "bad name"), 4, INVALID),
    _case("promote-confusable-name", ("promote", "1:0", "h\u0435ro"), 4, INVALID),
    _case("promote-escape-name", ("promote", "1:0", "x\x1b]0;pwned\x07"), 4, INVALID),
    # -- labels --
    _case("label-space", ("ref", "add", "newref", "%GOOD%", "--label", "bad label"), 4, "label"),
    _case("label-too-long", ("ref", "add", "newref", "%GOOD%", "--label", "l" * 33), 4, "label"),
    _case("label-control", ("ref", "add", "newref", "%GOOD%", "--label", "a\x1bb"), 4, "label"),
    _case("label-empty", ("ref", "add", "newref", "%GOOD%", "--label", ""), 4, "label"),
    _case("labels-more-than-images",
          ("ref", "add", "newref", "%GOOD%", "--label", "a", "--label", "b"), 4, "label"),
    _case("labels-duplicate", ("ref", "add", "newref", "%GOOD%", "%GOOD%", "--label", "a",
                               "--label", "a"), 4, "label"),
    _case("image-add-label-taken", ("ref", "image", "add", "mara", "%GOOD%", "--label", "side"),
          4, "side"),
    # -- kinds and tags --
    _case("kind-unknown", ("ref", "add", "newref", "%GOOD%", "--kind", "wizard"), 4, "kind"),
    _case("kind-empty", ("ref", "edit", "mara", "--kind", ""), 4, "kind"),
    _case("tag-without-sign", ("ref", "tag", "mara", "hero"), 4, r"\+hero"),
    _case("tag-empty", ("ref", "tag", "mara", "+"), 4, "tag"),
    _case("tag-comma", ("ref", "tag", "mara", "+bad,tag"), 4, "tag"),
    _case("tag-too-long", ("ref", "tag", "mara", "+" + "t" * 65), 4, "tag"),
    _case("tag-unknown-ref", ("ref", "tag", "nobody", "+x"), 6, "nobody"),
    # -- image selectors --
    _case("image-rm-unknown-label", ("ref", "image", "rm", "mara", "back"), 6, "back"),
    _case("image-primary-unknown-id", ("ref", "image", "primary", "mara", "#99999"), 6, "99999"),
    _case("image-rm-bad-id", ("ref", "image", "rm", "mara", "#abc"), (4, 6), "abc"),
    _case("image-rm-last-image", ("ref", "image", "rm", "tavern", "#3"), (4, 6), ""),
]


#: Run with REFSTUDIO_HOSTILE=all (see harness.ALL): more variants of the paths above.
EXTENDED = {
    "add-taken", "add-taken-at", "check-unknown", "edit-unknown", "image-add-label-taken",
    "image-primary-unknown-id", "image-rm-bad-id", "image-rm-unknown-label", "kind-empty",
    "kind-unknown", "label-empty", "label-space", "label-too-long", "labels-duplicate",
    "labels-more-than-images", "lineage-unknown", "name-accented", "name-at-only", "name-bell",
    "name-combining-accent", "name-dot", "name-double-at", "name-format-string", "name-fullwidth",
    "name-hyphen", "name-jinja", "name-path-absolute", "name-path-parent", "name-rtl-override",
    "name-shell", "name-space", "name-sql-quote", "name-tab", "name-too-short",
    "name-underscore-first", "name-very-long", "name-windows-path", "promote-confusable-name",
    "promote-invalid-name", "rename-confusable", "rename-invalid", "rename-onto-taken",
    "rename-sql", "rename-unknown", "rm-unknown", "show-unknown", "tag-comma", "tag-empty",
    "tag-too-long", "tag-unknown-ref", "tag-without-sign",
}


@pytest.mark.parametrize("case", params(CASES, EXTENDED))
def test_bad_name(case: Case, base: Base, tmp_path: Path) -> None:
    check(case, base, tmp_path)
