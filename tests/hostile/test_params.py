"""Hostile parameters: counts, seeds, sizes, costs, ids, projects; refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import plant as p
from .harness import Base, Case, check, params

CASES = [
    # -- counts --
    Case("gen-n-zero", ("gen", "@mara", "-n", "0"), 4, "-n"),
    Case("gen-n-negative", ("gen", "@mara", "-n", "-1"), 4, "-n"),
    Case("gen-n-million", ("gen", "@mara", "-n", "1000000"), (4, 8), "", key=True),
    Case("gen-n-huge", ("gen", "@mara", "-n", "99999999999999999999999"), (4, 8), "", key=True),
    Case("gen-n-text", ("gen", "@mara", "-n", "many"), 2, "-n"),
    Case("gen-n-float", ("gen", "@mara", "-n", "2.5"), 2, "-n"),
    # -- seeds --
    Case("seed-zero", ("gen", "@mara", "--seed", "0"), 4, "seed"),
    Case("seed-negative", ("gen", "@mara", "--seed", "-5"), (2, 4), "seed|-5"),
    Case("seed-too-big", ("gen", "@mara", "--seed", "2147483648"), 4, "seed"),
    Case("seed-huge", ("render", "@mara", "--seed", "9" * 40), 4, "seed"),
    Case("seed-nan", ("gen", "@mara", "--seed", "nan"), 2, "seed"),
    Case("seed-float", ("gen", "@mara", "--seed", "1.5"), 2, "seed"),
    Case("seed-empty", ("render", "@mara", "--seed", ""), 2, "seed"),
    # -- aspect ratio and resolution --
    Case("aspect-unsupported", ("gen", "@mara", "--aspect-ratio", "2:1"), 4, "aspect"),
    Case("aspect-zero", ("render", "@mara", "--aspect-ratio", "0:0"), 4, "aspect"),
    Case("aspect-three-parts", ("render", "@mara", "--aspect-ratio", "16:9:1"), 4, "aspect"),
    Case("aspect-shell", ("gen", "@mara", "--aspect-ratio", "16:9; rm -rf /"), 4, "aspect"),
    Case("resolution-4k", ("gen", "@mara", "--resolution", "4k"), 4, "resolution"),
    Case("resolution-negative", ("render", "@mara", "--resolution", "-720"), (2, 4), ""),
    Case("resolution-zero", ("render", "@mara", "--resolution", "0"), 4, "resolution"),
    # -- prompt text --
    Case("prompt-empty", ("gen", ""), 4, "empty"),
    Case("prompt-blank", ("gen", " \t "), 4, "empty"),
    Case("prompt-too-long", ("gen", "a" * 1001), 4, "1001"),
    Case("prompt-emoji-too-long", ("render", "\U0001F600" * 501), 4, "1002"),
    Case("prompt-none", ("gen",), 4, "prompt"),
    Case("prompt-and-template", ("render", "@mara", "-t", "scene"), 4, "prompt"),
    # -- money --
    Case("max-cost-nan", ("gen", "@mara", "--max-cost", "nan"), (4, 8), "max-cost",
         key=True),
    Case("max-cost-inf", ("gen", "@mara", "--max-cost", "inf"), (4, 8), "max-cost",
         key=True),
    Case("max-cost-negative", ("gen", "@mara", "--max-cost", "-1"), (4, 8), "max-cost",
         key=True),
    Case("max-cost-minus-inf", ("gen", "@mara", "--max-cost", "-inf"), (4, 8), "max-cost",
         key=True),
    Case("max-cost-text", ("gen", "@mara", "--max-cost", "cheap"), 2, "max-cost"),
    Case("max-cost-below-estimate", ("gen", "@mara", "--max-cost", "0.01"), 8, "max-cost",
         key=True),
    Case("max-cost-zero", ("gen", "@mara", "--max-cost", "0"), 8, "max-cost", key=True),
    Case("max-cost-batch", ("gen", "@mara", "-n", "5", "--max-cost", "0.2"), 8, "0.25",
         key=True),
    Case("run-max-cost-nan", ("run", "ok", "--max-cost", "nan"), (4, 8), "max-cost",
         key=True),
    # -- providers --
    Case("provider-unknown", ("gen", "@mara", "--provider", "bogus"), (3, 4), "bogus"),
    Case("provider-wavespeed-without-key", ("gen", "@mara", "--provider", "wavespeed"), 10,
         "key"),
    # -- ids and handles --
    Case("show-missing", ("show", "999"), 6, "999"),
    Case("show-zero", ("show", "0"), 6, "0"),
    Case("show-text", ("show", "abc"), 2, "generation_id"),
    Case("show-int64-overflow", ("show", "9" * 20), (4, 6), "9999"),
    Case("history-limit-overflow", ("history", "--limit", "9" * 20), 4, "limit"),
    Case("history-status-unknown", ("history", "--status", "bogus"), 4, "bogus"),
    Case("history-ref-unknown", ("history", "--ref", "nobody"), (0, 6), ""),
    Case("promote-missing-generation", ("promote", "999:0", "abcd"), 6, "999"),
    Case("promote-missing-output", ("promote", "1:7", "abcd"), 6, "7"),
    Case("promote-negative-output", ("promote", "1:-1", "abcd"), (4, 6), "-1"),
    Case("promote-handle-text", ("promote", "abc", "abcd"), 4, "abc"),
    Case("promote-handle-index-text", ("promote", "1:x", "abcd"), 4, "1:x"),
    Case("promote-handle-empty", ("promote", "", "abcd"), 4, "GEN_ID"),
    Case("promote-failed-generation", ("promote", "2:0", "abcd"), (6, 11), "2"),
    Case("promote-int64-overflow", ("promote", "9" * 20 + ":0", "abcd"), (4, 6), "9999"),
    Case("export-image-missing", ("export-image", "999:0", "--out", "%TMP%/x.png"), 6, "999"),
    Case("export-image-failed-generation", ("export-image", "2:0", "--out", "%TMP%/x.png"),
         (6, 11), "2"),
    Case("retry-completed", ("retry", "1", "--yes"), 11, "completed"),
    Case("retry-missing", ("retry", "999", "--yes"), 6, "999"),
    Case("retry-without-terminal", ("retry", "2"), 2, "--yes", key=True),
    Case("run-concurrency-negative", ("run", "ok", "--concurrency", "-3"), (2, 4),
         "concurrency"),
    # -- template variables --
    Case("var-no-equals", ("render", "@mara", "--var", "noeq"), 4, "noeq"),
    Case("var-bad-name", ("render", "@mara", "--var", "1bad=x"), 4, "1bad"),
    Case("var-bad-json", ("render", "@mara", "--var", "n:=notjson"), 4, "JSON"),
    Case("var-deep-json", ("render", "{{ d }}", "--var", "d:=" + "[" * 5000 + "]" * 5000), 4,
         "d:="),
    Case("var-reserved-refs", ("render", "{{ refs }}", "--var", "refs=x"), (4, 7), "refs"),
    Case("vars-file-missing", ("render", "@mara", "--vars", "%TMP%/nope.toml"), 4, "nope"),
    Case("vars-file-yaml", ("render", "@mara", "--vars", "%TMP%/v.yaml"), 4, "yaml",
         setup=p.write("v.yaml", "a: 1\n")),
    Case("vars-file-bad-toml", ("render", "@mara", "--vars", "%TMP%/v.toml"), 4, "v.toml",
         setup=p.write("v.toml", "a = = 1\n")),
    Case("vars-file-json-list", ("render", "@mara", "--vars", "%TMP%/v.json"), 4, "v.json",
         setup=p.write("v.json", "[1, 2]")),
    Case("vars-file-not-utf8", ("render", "@mara", "--vars", "%TMP%/v.toml"), 4, "v.toml",
         setup=p.write("v.toml", b"a = \"\xff\xfe\"\n")),
    Case("vars-file-directory", ("render", "@mara", "--vars", "%TMP%/v.toml"), 4, "v.toml",
         setup=p.folder("v.toml")),
    Case("vars-file-fifo", ("render", "@mara", "--vars", "%TMP%/v.toml"), 4, "v.toml",
         setup=p.fifo("v.toml")),
    Case("vars-file-dev-zero", ("render", "@mara", "--vars", "%TMP%/v.toml"), 4, "v.toml",
         setup=p.symlink("v.toml", "/dev/zero")),
    # -- projects --
    Case("project-missing", ("--project", "%TMP%/nowhere", "ref", "list"), 3, "nowhere"),
    Case("project-is-a-file", ("--project", "%PROJ%/refstudio.toml", "ref", "list"), 3,
         "refstudio.toml"),
    Case("project-none-here", ("ref", "list"), 3, "not inside a refstudio project",
         in_tmp=True),
    Case("project-env-missing", ("ref", "list"), 3, "REFSTUDIO_PROJECT", in_tmp=True,
         setup=p.env(REFSTUDIO_PROJECT="%TMP%/nowhere")),
    Case("init-over-project", ("init", "%PROJ%"), 3, "already"),
    Case("init-onto-file", ("init", "%PROJ%/refstudio.toml"), 3, "refstudio.toml"),
    Case("demo-over-project", ("demo", "%PROJ%"), 3, "already"),
    # -- tools --
    Case("config-set-key-without-terminal", ("config", "set-key"), 2, ""),
    Case("simulator-rate-over-one", ("simulator", "--fail-rate", "2"), 4, "fail", timeout=10),
    Case("simulator-port-too-big", ("simulator", "--port", "99999"), 4, "port", timeout=10),
]


#: Run with REFSTUDIO_HOSTILE=all (see harness.ALL): more variants of the paths above.
EXTENDED = {
    "aspect-shell", "aspect-three-parts", "aspect-zero", "demo-over-project",
    "export-image-failed-generation", "export-image-missing", "gen-n-float", "gen-n-huge",
    "gen-n-negative", "gen-n-text", "history-ref-unknown", "history-status-unknown",
    "init-onto-file", "init-over-project", "max-cost-batch", "max-cost-minus-inf",
    "max-cost-negative", "max-cost-text", "max-cost-zero", "project-env-missing",
    "project-is-a-file", "promote-handle-empty", "promote-handle-index-text",
    "promote-handle-text", "promote-missing-generation", "promote-missing-output",
    "promote-negative-output", "prompt-and-template", "prompt-blank", "prompt-emoji-too-long",
    "prompt-none", "provider-unknown", "resolution-4k", "resolution-negative", "resolution-zero",
    "retry-completed", "retry-missing", "seed-empty", "seed-float", "seed-huge", "seed-nan",
    "seed-negative", "seed-too-big", "show-missing", "show-text", "show-zero",
    "simulator-port-too-big", "var-bad-json", "var-bad-name", "var-no-equals",
    "vars-file-directory", "vars-file-json-list", "vars-file-missing", "vars-file-not-utf8",
    "vars-file-yaml",
}


@pytest.mark.parametrize("case", params(CASES, EXTENDED))
def test_bad_parameter(case: Case, base: Base, tmp_path: Path) -> None:
    check(case, base, tmp_path)
