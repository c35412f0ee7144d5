"""Hostile workflow files: every mistake is found by the planner (so by ``--dry-run``), before
anything is paid for; exit 12 (7 for prompt problems the planner reports as such)."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import plant as p
from .harness import Base, Case, Setup, check, params

STEP = '[[step]]\nid = "a"\nprompt = "@mara by the sea"\n'


def dry(cid: str, text: str | bytes, code: int | tuple[int, ...] = 12, pattern: str = "w.toml",
        **kw: object) -> Case:
    """``run w --dry-run`` on this workflow file."""
    return Case(f"dry-{cid}", ("run", "w", "--dry-run"), code, pattern,
                setup=p.workflow("w.toml", text), **kw)  # type: ignore[arg-type]


def real(cid: str, text: str, code: int | tuple[int, ...] = 12, pattern: str = "",
         setup: Setup | None = None, **kw: object) -> Case:
    """``run w`` for real (offline provider), for checks only a run reaches."""
    planted = p.workflow("w.toml", text)
    return Case(f"run-{cid}", ("run", "w"), code, pattern,
                setup=p.steps(setup, planted) if setup else planted, **kw)  # type: ignore[arg-type]


def refs(images: str, name: str = "newref") -> str:
    return (f'[refs.{name}]\nimages = [{images}]\nkind = "object"\n\n'
            f'[[step]]\nid = "a"\nprompt = "@{name} on a table"\n')


CASES = [
    # -- the file itself --
    dry("bad-toml", '[[step]\nid = "a"\n'),
    dry("not-utf8", b'[[step]]\nid = "a"\nprompt = "\xff\xfe"\n'),
    dry("empty", ""),
    dry("no-steps", "[vars]\nhero = 'mara'\n", pattern="step"),
    dry("unknown-top-key", "colour = 'red'\n" + STEP, pattern="colour"),
    dry("unknown-step-key", STEP + "sede = 5\n", pattern="sede"),
    dry("step-not-a-table", "step = 5\n", pattern="step"),
    dry("prompt-not-a-string", '[[step]]\nid = "a"\nprompt = 5\n', pattern="prompt"),
    dry("neither-prompt-nor-template", '[[step]]\nid = "a"\n', pattern="prompt"),
    dry("prompt-and-template", STEP + 'template = "scene"\n', pattern="template"),
    dry("duplicate-ids", STEP + STEP, pattern="twice"),
    dry("bad-step-id", '[[step]]\nid = "1x"\nprompt = "@mara"\n', pattern="id"),
    dry("path-step-id", '[[step]]\nid = "../x"\nprompt = "@mara"\n', pattern="id"),
    dry("after-unknown", STEP + 'after = ["ghost"]\n', pattern="ghost"),
    # -- ordering --
    dry("after-self", STEP + 'after = ["a"]\n', pattern="cycle|itself|a"),
    dry("after-cycle", '[[step]]\nid = "a"\nprompt = "@mara"\nafter = ["b"]\n'
        '[[step]]\nid = "b"\nprompt = "@mara"\nafter = ["a"]\n', pattern="cycle"),
    dry("mention-cycle", '[[step]]\nid = "a"\nprompt = "@bbbb"\npromote = {name = "aaaa"}\n'
        '[[step]]\nid = "b"\nprompt = "@aaaa"\npromote = {name = "bbbb"}\n', pattern="cycle"),
    dry("three-cycle", '[[step]]\nid = "a"\nprompt = "@cccc"\npromote = {name = "aaaa"}\n'
        '[[step]]\nid = "b"\nprompt = "@aaaa"\npromote = {name = "bbbb"}\n'
        '[[step]]\nid = "c"\nprompt = "@bbbb"\npromote = {name = "cccc"}\n', pattern="cycle"),
    dry("self-mention", '[[step]]\nid = "a"\nprompt = "@newhero by the sea"\n'
        'promote = {name = "newhero"}\n', pattern="newhero"),
    # -- promote --
    dry("promote-bad-name", STEP + 'promote = {name = "1 bad"}\n', pattern="1 bad"),
    dry("promote-confusable-name", STEP + 'promote = {name = "h\u0435ro2"}\n', pattern=""),
    dry("promote-bad-kind", STEP + 'promote = {name = "newone", kind = "wizard"}\n',
        pattern="wizard"),
    dry("promote-bad-label", STEP + 'promote = {name = "newone", label = "a b"}\n',
        pattern="label"),
    dry("pick-out-of-range", STEP + 'variants = 2\npromote = {name = "newone", pick = 7}\n',
        pattern="pick|7"),
    dry("pick-negative", STEP + 'promote = {name = "newone", pick = -1}\n', pattern="pick"),
    dry("pick-word", STEP + 'promote = {name = "newone", pick = "last"}\n', pattern="pick"),
    dry("promote-not-a-table", STEP + 'promote = "newone"\n', pattern="promote"),
    # -- parameters --
    dry("variants-zero", STEP + "variants = 0\n", pattern="variants"),
    dry("variants-negative", STEP + "variants = -1\n", pattern="variants"),
    dry("variants-huge", STEP + "variants = 100000\n", code=(8, 12), pattern=""),
    dry("seed-zero", STEP + "seed = 0\n", pattern="seed"),
    dry("seed-overflow", STEP + "seed = 2147483647\nvariants = 2\n", pattern="seed"),
    dry("seed-float", STEP + "seed = 1.5\n", pattern="seed"),
    dry("aspect", STEP + 'aspect_ratio = "2:1"\n', pattern="aspect"),
    dry("resolution", STEP + 'resolution = "4k"\n', pattern="resolution"),
    dry("provider-unknown", STEP + 'provider = "bogus"\n', code=(3, 12), pattern="bogus"),
    # -- prompts --
    dry("unknown-mention", '[[step]]\nid = "a"\nprompt = "@nobody"\n', pattern="nobody"),
    dry("four-references", '[[step]]\nid = "a"\nprompt = "@mara @tavern @lantern @rainy"\n',
        code=(7, 12), pattern="4 references"),
    dry("undefined-var", '[[step]]\nid = "a"\nprompt = "@{{ hero }}"\n', code=(7, 12),
        pattern="hero"),
    dry("sandbox-escape", '[[step]]\nid = "a"\nprompt = "{{ cycler.__init__.__globals__ }}"\n',
        code=(7, 12), pattern="not allowed"),
    dry("template-missing", '[[step]]\nid = "a"\ntemplate = "nope"\n', code=(7, 12),
        pattern="nope"),
    dry("template-escape", '[[step]]\nid = "a"\ntemplate = "../refstudio"\n', code=(7, 12),
        pattern="outside"),
    dry("lipsum", '[[step]]\nid = "a"\nprompt = "{{ lipsum(1000000) }}"\n', code=(4, 7, 12),
        pattern="", timeout=10),
    Case("dry-var-bad", ("run", "ok", "--dry-run", "--var", "noeq"), 4, "noeq"),
    # -- [refs] --
    dry("refs-bad-name", '[refs."1bad"]\nimages = ["x.png"]\n' + STEP, pattern="1bad"),
    dry("refs-no-images", '[refs.newref]\nimages = []\n' + STEP, pattern="images"),
    dry("refs-bad-kind", '[refs.newref]\nimages = ["x.png"]\nkind = "wizard"\n'
        '[[step]]\nid = "a"\nprompt = "@newref"\n', code=(4, 12), pattern="wizard"),
    real("refs-missing-image", refs('"../nope.png"'), code=(5, 12), pattern="nope"),
    real("refs-text-image", refs('"notes.png"'), code=(5, 12), pattern="notes",
         setup=p.write("workflows/notes.png", "words\n", where="proj")),
    real("refs-dev-zero", refs('"/dev/zero"'), code=(4, 5, 12), pattern="zero", timeout=15),
    real("refs-fifo", refs('"pipe.png"'), code=(5, 12), pattern="pipe",
         setup=p.fifo("workflows/pipe.png", where="proj")),
    real("refs-outside-absolute", refs('"%TMP%/good.png"'), code=(4, 12), pattern="outside",
         setup=p.image("good.png")),
    real("refs-outside-relative", refs('"../../scratch/good.png"'), code=(4, 12),
         pattern="outside", setup=p.image("good.png")),
    real("refs-etc-passwd", refs('"/etc/passwd"'), code=(4, 5, 12), pattern="passwd"),
    # -- naming the workflow --
    Case("run-missing", ("run", "nope"), 12, "nope"),
    Case("run-etc-passwd", ("run", "/etc/passwd", "--dry-run"), 12, "passwd"),
    Case("run-dev-zero", ("run", "/dev/zero", "--dry-run"), 12, "zero"),
    Case("run-fifo", ("run", "pipe", "--dry-run"), 12, "pipe",
         setup=p.fifo("workflows/pipe.toml", where="proj")),
    Case("run-directory", ("run", "%TMP%", "--dry-run"), 12, ""),
    Case("run-link-to-dev-zero", ("run", "zero", "--dry-run"), 12, "zero",
         setup=p.symlink("workflows/zero.toml", "/dev/zero", where="proj")),
    # -- money --
    Case("run-over-max-cost", ("run", "ok", "--max-cost", "0.01"), 8, "max-cost", key=True),
]


#: Run with REFSTUDIO_HOSTILE=all (see harness.ALL): more variants of the paths above.
EXTENDED = {
    "dry-after-cycle", "dry-after-unknown", "dry-aspect", "dry-bad-step-id", "dry-empty",
    "dry-neither-prompt-nor-template", "dry-no-steps", "dry-path-step-id", "dry-pick-negative",
    "dry-pick-word", "dry-promote-bad-label", "dry-promote-confusable-name",
    "dry-promote-not-a-table", "dry-prompt-and-template", "dry-prompt-not-a-string",
    "dry-resolution", "dry-sandbox-escape", "dry-seed-float", "dry-seed-overflow",
    "dry-seed-zero", "dry-step-not-a-table", "dry-template-escape", "dry-template-missing",
    "dry-three-cycle", "dry-undefined-var", "dry-unknown-top-key", "dry-var-bad",
    "dry-variants-negative", "dry-variants-zero", "run-dev-zero", "run-directory",
    "run-etc-passwd", "run-link-to-dev-zero", "run-missing", "run-refs-etc-passwd",
    "run-refs-text-image",
}


@pytest.mark.parametrize("case", params(CASES, EXTENDED))
def test_bad_workflow(case: Case, base: Base, tmp_path: Path) -> None:
    check(case, base, tmp_path)
