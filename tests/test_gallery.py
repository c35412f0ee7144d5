"""The static gallery: pages, links that resolve from file://, escaping, the thumbnail cache,
the CLI, and that the API key never reaches it."""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from conftest import encode_image, run_cli

from refstudio import Studio
from refstudio.gallery import GalleryReport, build_gallery
from refstudio.gallery.text import linkify_mentions

XSS_PROMPT = "@mara_v2 waves <script>alert(1)</script> to me@example.com"
XSS_DESCRIPTION = 'a tavern <img src=x onerror="alert(2)"> & friends'
XSS_TAG = "<b>bold</b>"


def make_gallery_project(root: Path, offline_dir: Path) -> Path:
    """A small project: two imported references, three generations (one a pair), a promotion
    (``mara_v2`` from output 1:0) and a prompt, description and tag full of HTML."""
    sources = root.parent / f"{root.name}-sources"
    sources.mkdir(parents=True, exist_ok=True)
    mara = sources / "mara.png"
    mara.write_bytes(encode_image((600, 800), seed=1))
    tavern = sources / "tavern <1>.png"  # a file name that needs escaping and URL quoting
    tavern.write_bytes(encode_image((900, 500), seed=2))
    old = os.environ.get("REFSTUDIO_OFFLINE_DIR")
    os.environ["REFSTUDIO_OFFLINE_DIR"] = str(offline_dir)
    try:
        with Studio.init(root) as studio:
            studio.add_reference("mara", [mara], tags=["hero", XSS_TAG])
            studio.add_reference("tavern", [tavern], kind="location", description=XSS_DESCRIPTION)
            studio.generate("@mara in @tavern by the fire", n=2, seed=1, provider="offline")
            studio.promote(1, "mara_v2")
            studio.generate(XSS_PROMPT, seed=7, provider="offline")
    finally:
        if old is None:
            os.environ.pop("REFSTUDIO_OFFLINE_DIR", None)
        else:
            os.environ["REFSTUDIO_OFFLINE_DIR"] = old
    return root


@pytest.fixture(scope="module")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("gallery")
    return make_gallery_project(base / "proj", base / "offline")


@pytest.fixture(scope="module")
def built(project_root: Path) -> GalleryReport:
    with Studio.open(project_root) as studio:
        return build_gallery(studio)


class _Links(HTMLParser):
    """Every href/src, every id, and the tags seen, in one page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.links.append(value)
            if name == "id" and value:
                self.ids.add(value)


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text("utf-8"))
    return parser


def test_pages_and_report(built: GalleryReport, project_root: Path) -> None:
    out = project_root / "gallery"
    assert built.out_dir == out
    names = sorted(p.name for p in out.glob("*.html"))
    assert names == [
        "compare.html",
        "generations.html",
        "index.html",
        "lineage-mara.html",
        "lineage-mara_v2.html",
        "lineage-tavern.html",
    ]
    assert built.pages == 6
    # 2 imported images + 3 outputs (output 1:0 is also mara_v2's image: one thumbnail).
    assert built.thumbnails_made == 5 and built.thumbnails_reused == 0
    assert len(list((out / "thumbs").glob("*.jpg"))) == 5
    assert (out / "gallery.css").is_file()
    assert built.to_dict()["index"] == str(out / "index.html")


def test_every_link_resolves_relatively(built: GalleryReport) -> None:
    out = built.out_dir
    pages = {p.name: _parse(p) for p in out.glob("*.html")}
    checked = 0
    for name, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            assert not parts.scheme and not parts.netloc, f"{name}: non-relative link {link}"
            assert not link.startswith("/"), f"{name}: absolute path {link}"
            target = name if not parts.path else unquote(parts.path)
            path = (out / target).resolve()
            assert path.is_file(), f"{name}: {link} does not resolve"
            if parts.fragment:
                assert parts.fragment in pages[target].ids, f"{name}: no anchor {link}"
            checked += 1
    assert checked > 30
    # Full-size images link into the project's media/ folder beside the gallery.
    assert any(link.startswith("../media/") for link in pages["index.html"].links)


def test_library_page_shows_references(built: GalleryReport) -> None:
    html = (built.out_dir / "index.html").read_text("utf-8")
    for anchor in ('id="ref-mara"', 'id="ref-tavern"', 'id="ref-mara_v2"'):
        assert anchor in html
    assert "location" in html and "character" in html
    assert "#hero" in html
    assert "tavern &lt;1&gt;.png" in html  # the imported file's name, escaped
    assert 'href="generations.html#gen-1"' in html  # mara_v2 came from output 1:0
    assert 'href="lineage-mara_v2.html"' in html


def test_generations_page(built: GalleryReport) -> None:
    html = (built.out_dir / "generations.html").read_text("utf-8")
    assert [int(i) for i in re.findall(r'id="gen-(\d+)"', html)] == [3, 2, 1]  # newest first
    assert '<a class="mention" href="index.html#ref-mara">@mara</a>' in html
    assert '<a class="mention" href="index.html#ref-tavern">@tavern</a>' in html
    assert "seed</dt><dd>1<" in html and "seed</dt><dd>2<" in html
    assert "resolution" in html and "aspect_ratio" in html
    assert '→ <a href="lineage-mara_v2.html">@mara_v2</a>' in html  # output 1:0 became it
    assert "completed" in html


def test_user_text_is_escaped(built: GalleryReport) -> None:
    for page in built.out_dir.glob("*.html"):
        parsed = _parse(page)
        assert "script" not in parsed.tags, page.name
        html = page.read_text("utf-8")
        assert "<script" not in html and "onerror=" not in html.replace("onerror=&#34;", "")
        assert "<b>bold" not in html
    gens = (built.out_dir / "generations.html").read_text("utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in gens
    # The address is text, not a mention.
    assert "me@example.com" in gens and 'href="index.html#ref-example"' not in gens
    index = (built.out_dir / "index.html").read_text("utf-8")
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt; &amp; friends" in index
    assert "#&lt;b&gt;bold&lt;/b&gt;" in index


def test_linkify_escapes_first_and_links_only_resolved_names() -> None:
    targets = {"mara": "index.html#ref-mara"}
    out = linkify_mentions(
        '@mara & "@Mara" <@mara> me@mara.com @ghost @@x @ab',
        lambda name: targets.get(name.lower()),
    )
    assert out == (
        '<a class="mention" href="index.html#ref-mara">@mara</a> &amp; '
        '&#34;<a class="mention" href="index.html#ref-mara">@Mara</a>&#34; '
        '&lt;<a class="mention" href="index.html#ref-mara">@mara</a>&gt; '
        "me@mara.com @ghost @@x @ab"
    )


def test_lineage_page_is_a_chain(built: GalleryReport) -> None:
    html = (built.out_dir / "lineage-mara_v2.html").read_text("utf-8")
    # imported files -> @mara / @tavern -> generation 1:0 -> @mara_v2
    assert html.count("imported") >= 2
    assert 'href="generations.html#gen-1"' in html and "#1:0" in html
    assert 'href="index.html#ref-mara"' in html and 'href="index.html#ref-tavern"' in html
    assert html.count("<img") >= 4


def test_rebuild_reuses_thumbnails_and_makes_only_new_ones(
    project_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A copy: this test adds generations, and the module's project must stay as built.
    copy = tmp_path / "copy"
    shutil.copytree(project_root, copy, ignore=shutil.ignore_patterns("gallery"))
    out = tmp_path / "site"
    with Studio.open(copy) as studio:
        first = build_gallery(studio, out)
        again = build_gallery(studio, out)
        assert (first.thumbnails_made, first.thumbnails_reused) == (5, 0)
        assert (again.thumbnails_made, again.thumbnails_reused) == (0, 5)
        monkeypatch.setenv("REFSTUDIO_OFFLINE_DIR", str(tmp_path / "offline"))
        studio.generate("@tavern at night", n=2, seed=11, provider="offline")
        third = build_gallery(studio, out)
    assert (third.thumbnails_made, third.thumbnails_reused) == (2, 5)
    # Written outside the project, full-size links still find media/ relatively.
    index = _parse(out / "index.html")
    media = [link for link in index.links if "/media/" in link]
    assert media and all((out / unquote(link)).resolve().is_file() for link in media)


def test_pagination_and_stale_pages(project_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "paged"
    with Studio.open(project_root) as studio:
        report = build_gallery(studio, out, page_size=2)
        assert (out / "generations-2.html").is_file()
        page2 = (out / "generations-2.html").read_text("utf-8")
        assert 'id="gen-1"' in page2
        # The lineage of mara_v2 points at generation 1 on page 2.
        assert 'href="generations-2.html#gen-1"' in (out / "lineage-mara_v2.html").read_text()
        assert report.pages == 7
        build_gallery(studio, out)  # one page again: the old page 2 goes
    assert not (out / "generations-2.html").exists()


def test_missing_media_gives_a_placeholder(project_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(project_root, copy, ignore=shutil.ignore_patterns("gallery"))
    with Studio.open(copy) as studio:
        victim = Path(studio.reference("tavern").images[0].path)
        victim.unlink()
        report = build_gallery(studio)
    assert report.thumbnails_made == 4
    index = (copy / "gallery" / "index.html").read_text("utf-8")
    assert 'class="thumb  missing"' in index


def test_empty_project(tmp_path: Path) -> None:
    with Studio.init(tmp_path / "empty") as studio:
        report = build_gallery(studio)
    assert report.pages == 3 and report.thumbnails_made == 0
    assert "No references yet" in (report.out_dir / "index.html").read_text("utf-8")


def test_cli_json_and_key_never_in_gallery(project_root: Path, tmp_path: Path) -> None:
    sentinel = "sk-GALLERY-SENTINEL-4242"
    out = tmp_path / "cli-site"
    done = run_cli(
        "-p",
        str(project_root),
        "gallery",
        "--out",
        str(out),
        "--json",
        env={"WAVESPEED_API_KEY": sentinel},
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["out_dir"] == str(out) and data["pages"] == 6
    assert data["thumbnails_made"] + data["thumbnails_reused"] == 5
    assert sentinel not in done.stdout + done.stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in files:
        assert b"SENTINEL-4242" not in path.read_bytes(), path

    human = run_cli("-p", str(project_root), "gallery", env={"WAVESPEED_API_KEY": sentinel})
    assert human.returncode == 0, human.stderr
    assert "thumbnails made" in human.stdout and "index.html" in human.stdout
    for path in (project_root / "gallery").rglob("*"):
        if path.is_file():
            assert b"SENTINEL-4242" not in path.read_bytes(), path


def test_cli_outside_a_project(tmp_path: Path) -> None:
    done = run_cli("gallery", cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr


def test_download_links_carry_provenance_and_leave_originals_alone(tmp_path: Path) -> None:
    """Every output gets a PNG download whose text chunks say where it came from."""
    import hashlib

    from refstudio import Studio, read_provenance
    from refstudio.gallery import build_gallery

    target = tmp_path / "demo"
    done = run_cli("demo", str(target))
    assert done.returncode == 0, done.stderr
    with Studio.open(target) as studio:
        gens = studio.history(limit=None)
        before = {o.path: hashlib.sha256(o.path.read_bytes()).hexdigest()
                  for g in gens for o in g.outputs}
        build_gallery(studio)
        page = (target / "gallery" / "generations.html").read_text()
        for gen in gens:
            for output in gen.outputs:
                name = f"downloads/{gen.id}-{output.index}.png"
                assert f'href="{name}"' in page
                record = read_provenance(target / "gallery" / name)
                assert record["generation_id"] == gen.id
                assert record["prompt"] == gen.prompt
                assert record["seed"] == gen.seed
        after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before}
        assert after == before


# -- compare ------------------------------------------------------------------------------------

COMPARE_PROMPT = "@mara meets @tavern <script>alert(3)</script>"


def _columns(html: str) -> list[dict[str, object]]:
    """Each model column of the one comparison on the page: model id, name, seeds, thumbnails."""
    columns = []
    for part in html.split('<div class="column" ')[1:]:
        columns.append({
            "model": re.search(r'data-model="([^"]+)"', part).group(1),  # type: ignore[union-attr]
            "name": re.search(r'<h3 class="model">([^<]+)</h3>', part).group(1),  # type: ignore[union-attr]
            "seeds": re.findall(r'class="seed">seed ([^<]+)<', part),
            "thumbs": re.findall(r'<img src="(thumbs/[^"]+)"', part),
            "cost": re.search(r'<span class="cost">(\$[0-9.]+)</span>', part).group(1),  # type: ignore[union-attr]
        })
    return columns


def test_compare_page_shows_models_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from refstudio.gallery.thumbs import thumb_name

    monkeypatch.setenv("REFSTUDIO_OFFLINE_DIR", str(tmp_path / "offline"))
    for name, seed in (("mara", 1), ("tavern", 2)):
        (tmp_path / f"{name}.png").write_bytes(encode_image((600, 700), seed=seed))
    with Studio.init(tmp_path / "proj") as studio:
        studio.add_reference("mara", [tmp_path / "mara.png"])
        studio.add_reference("tavern", [tmp_path / "tavern.png"])
        results = studio.compare(COMPARE_PROMPT, ["gen4", "nano-banana"], n=2, seed=5,
                                 provider="offline")
        studio.generate("@mara alone", seed=9, provider="offline")  # one model: no comparison
        report = build_gallery(studio)
    html = (report.out_dir / "compare.html").read_text("utf-8")
    assert html.count('class="comparison"') == 1
    columns = _columns(html)
    assert [c["model"] for c in columns] == [r.model for r in results] == [
        "wavespeed:runwayml/gen4-image", "wavespeed:google/nano-banana/edit"]
    assert columns[0]["name"] == "Runway Gen-4 Image"
    assert str(columns[1]["name"]).startswith("Google Nano Banana")
    assert columns[0]["seeds"] == ["5", "6"]  # Gen-4 takes seeds; Nano Banana takes none
    for column, result in zip(columns, results, strict=True):
        # Each column holds exactly its own model's outputs, with the shared seeds and its cost.
        assert column["thumbs"] == [thumb_name_path(thumb_name, o.sha256)
                                    for g in result.generations for o in g.outputs]
        assert len(column["thumbs"]) == 2
        assert column["seeds"] == [str(g.seed) if g.seed is not None else "–"
                                   for g in result.generations]
        assert column["cost"] == f"${sum(g.cost_estimate for g in result.generations):.3f}"
    # The order-binding model was sent its own rendering; both texts are escaped.
    assert "sent as <q>mara (image 1) meets tavern (image 2) &lt;script&gt;" in html
    assert '<a class="mention" href="index.html#ref-mara">@mara</a>' in html
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in html
    assert "<script" not in html and "script" not in _parse(report.out_dir / "compare.html").tags
    assert "@mara alone" not in html
    index = (report.out_dir / "index.html").read_text("utf-8")
    assert '<a href="compare.html">Compare <span class="count">1</span></a>' in index


def thumb_name_path(thumb_name: object, sha: str) -> str:
    return f"thumbs/{thumb_name(sha)}"  # type: ignore[operator]


def test_compare_page_without_comparisons(built: GalleryReport) -> None:
    html = (built.out_dir / "compare.html").read_text("utf-8")
    assert "No prompt has been made on two models yet" in html
    assert 'class="comparison"' not in html
