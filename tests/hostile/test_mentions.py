"""Hostile ``@`` mentions: unknown names, odd syntax, too many references; exit 7, nothing sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import Base, Case, check, params

FOUR = "@mara @tavern @lantern @rainy"

CASES = [
    Case("render-unknown", ("render", "@nobody on a hill"), 7, "@nobody"),
    Case("render-did-you-mean", ("render", "@marra on a hill"), 7, "@marra"),
    Case("render-unknown-json", ("render", "@nobody on a hill", "--json"), 7, "@nobody"),
    Case("render-unknown-label", ("render", "@mara:back in the rain"), 7, "back"),
    Case("render-label-of-unlabelled", ("render", "@tavern:inside at night"), 7, "inside"),
    Case("render-too-short", ("render", "@ab here"), 7, "@ab"),
    Case("render-confusable", ("render", "@m\u0430ra here"), 7, "mention"),
    Case("render-too-long-name", ("render", "@abcdefghijklmnopq here"), 7, "abcdefghijklmnopq"),
    Case("render-four-references", ("render", f"{FOUR} together"), 7, "4 references"),
    Case("render-four-with-labels", ("render", "@mara:side @tavern @lantern @rainy"), 7,
         "4 references"),
    Case("render-five-references", ("render", f"{FOUR} @hero"), 7, "5 references"),
    Case("render-many-unknown", ("render", " ".join(f"@ghost{i:04d}" for i in range(120))),
         (4, 7), ""),
    Case("render-mentions-through-var",
         ("render", "@{{ who }} at the bar", "--var", "who=mara @tavern @lantern @rainy"),
         7, "4 references"),
    Case("render-unknown-through-var", ("render", "@{{ who }} at the bar", "--var",
                                        "who=nobody"), 7, "@nobody"),
    Case("render-mention-after-removal", ("render", "@lantern glowing"), 7, "@lantern",
         setup=lambda ctx: _remove_ref(ctx, "lantern")),
    # gen: the same refusals, before any row is written or anything is sent
    Case("gen-unknown", ("gen", "@nobody on a hill"), 7, "@nobody"),
    Case("gen-unknown-with-key", ("gen", "@nobody on a hill", "-n", "3"), 7, "@nobody",
         key=True),
    Case("gen-four-references-with-key", ("gen", f"{FOUR} together"), 7, "4 references",
         key=True),
    Case("gen-unknown-label-with-key", ("gen", "@mara:back"), 7, "back", key=True),
    Case("gen-promote-bad-name", ("gen", "@mara waving", "--promote", "bad name"), 4,
         "invalid reference name", key=True),
    Case("gen-promote-confusable", ("gen", "@mara waving", "--promote", "h\u0435ro"), 4,
         "invalid reference name", key=True),
]


def _remove_ref(ctx: object, name: str) -> None:
    from refstudio import Studio

    with Studio.open(ctx.proj) as studio:  # type: ignore[attr-defined]
        studio.remove_reference(name)


#: Run with REFSTUDIO_HOSTILE=all (see harness.ALL): more variants of the paths above.
EXTENDED = {
    "gen-promote-confusable", "gen-unknown", "gen-unknown-label-with-key",
    "render-five-references", "render-four-with-labels", "render-label-of-unlabelled",
    "render-mention-after-removal", "render-too-long-name", "render-too-short", "render-unknown",
    "render-unknown-through-var",
}


@pytest.mark.parametrize("case", params(CASES, EXTENDED))
def test_bad_mention(case: Case, base: Base, tmp_path: Path) -> None:
    check(case, base, tmp_path)
