"""Bad image files given to every verb that reads one: refused with exit 5, nothing stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import plant as p
from .harness import Base, Case, check, params


def _jpeg_huge_header() -> bytes:
    """A real JPEG whose SOF0 header claims 60000x60000 pixels."""
    from conftest import encode_image

    data = bytearray(encode_image((64, 64), "JPEG", 5))
    at = data.index(b"\xff\xc0")
    data[at + 5:at + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")
    return bytes(data)


def _png_bad_crc() -> bytes:
    from conftest import encode_image

    data = bytearray(encode_image((64, 64), "PNG", 6))
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(data)


SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


CASES = [
    # -- contents that are not a whole, supported image --
    *(Case(f"add-{kind}", ("ref", "add", "newref", "%TMP%/bad.png"), 5, r"bad\.png",
           setup=p.bad_image(kind, "bad.png"))
      for kind in ("text", "empty", "truncated", "bomb_header", "bomb_real", "ico", "pcx")),
    Case("add-jpeg-huge-dimensions", ("ref", "add", "newref", "%TMP%/huge.jpg"), 5,
         r"huge\.jpg", setup=p.write("huge.jpg", _jpeg_huge_header())),
    Case("add-png-bad-crc", ("ref", "add", "newref", "%TMP%/crc.png"), 5, r"crc\.png",
         setup=p.write("crc.png", _png_bad_crc())),
    Case("add-svg", ("ref", "add", "newref", "%TMP%/logo.svg"), 5, r"logo\.svg",
         setup=p.write("logo.svg", SVG)),
    Case("add-pdf-named-png", ("ref", "add", "newref", "%TMP%/doc.png"), 5, r"doc\.png",
         setup=p.write("doc.png", PDF)),
    Case("add-zip-named-png", ("ref", "add", "newref", "%TMP%/z.png"), 5, r"z\.png",
         setup=p.write("z.png", p.make_zip_bytes(lambda zf: zf.writestr("a.txt", "x")))),
    Case("add-jpeg-soi-only", ("ref", "add", "newref", "%TMP%/soi.jpg"), 5, r"soi\.jpg",
         setup=p.write("soi.jpg", b"\xff\xd8\xff")),
    Case("add-text-named-jpg", ("ref", "add", "newref", "%TMP%/notes.jpg"), 5, r"notes\.jpg",
         setup=p.write("notes.jpg", "not a jpeg at all\n")),
    Case("add-over-size-limit", ("ref", "add", "newref", "%TMP%/big.png"), 5,
         r"big\.png.*limit", setup=p.sparse("big.png", 25_000_000)),
    # -- paths that are not regular files --
    Case("add-missing-file", ("ref", "add", "newref", "%TMP%/nope.png"), 5, r"nope\.png"),
    Case("add-directory", ("ref", "add", "newref", "%TMP%/dir.png"), 5, r"dir\.png",
         setup=p.folder("dir.png")),
    Case("add-symlink-loop", ("ref", "add", "newref", "%TMP%/loop.png"), 5, r"loop\.png",
         setup=p.link_loop("loop.png")),
    Case("add-dangling-symlink", ("ref", "add", "newref", "%TMP%/gone.png"), 5, r"gone\.png",
         setup=p.symlink("gone.png", "%TMP%/nothing-here.png")),
    Case("add-dev-null", ("ref", "add", "newref", "/dev/null"), 5, r"/dev/null"),
    Case("add-dev-zero", ("ref", "add", "newref", "/dev/zero"), 5, r"/dev/zero", timeout=15),
    Case("add-symlink-to-dev-zero", ("ref", "add", "newref", "%TMP%/zero.png"), 5, r"zero\.png",
         setup=p.symlink("zero.png", "/dev/zero"), timeout=15),
    Case("add-fifo", ("ref", "add", "newref", "%TMP%/pipe.png"), 5, r"pipe\.png",
         setup=p.fifo("pipe.png")),
    Case("add-unreadable", ("ref", "add", "newref", "%TMP%/secret.png"), (2, 5), r"secret\.png",
         setup=p.steps(p.image("secret.png"), p.chmod("secret.png", 0o000)), unprivileged=True),
    # -- one bad file among good ones: nothing of the batch is stored --
    Case("add-good-then-bad", ("ref", "add", "newref", "%TMP%/good.png", "%TMP%/bad.png"), 5,
         r"bad\.png", setup=p.steps(p.image("good.png"), p.bad_image("truncated", "bad.png"))),
    Case("image-add-text", ("ref", "image", "add", "mara", "%TMP%/bad.png"), 5, r"bad\.png",
         setup=p.bad_image("text", "bad.png")),
    Case("image-add-good-then-bomb",
         ("ref", "image", "add", "mara", "%TMP%/good.png", "%TMP%/bomb.png"), 5, r"bomb\.png",
         setup=p.steps(p.image("good.png"), p.bad_image("bomb_header", "bomb.png"))),
    Case("image-add-fifo", ("ref", "image", "add", "mara", "%TMP%/pipe.png"), 5, r"pipe\.png",
         setup=p.fifo("pipe.png")),
    # -- inspect reads an image the user names --
    Case("inspect-text", ("inspect", "%TMP%/notes.png"), (4, 5), r"notes\.png",
         setup=p.write("notes.png", "plain words\n")),
    Case("inspect-empty", ("inspect", "%TMP%/empty.png"), (4, 5), r"empty\.png",
         setup=p.write("empty.png", b"")),
    Case("inspect-missing", ("inspect", "%TMP%/nope.png"), (4, 5, 6), r"nope\.png"),
    Case("inspect-png-without-provenance", ("inspect", "%TMP%/plain.png"), (4, 5),
         r"plain\.png", setup=p.image("plain.png")),
    Case("inspect-dev-zero", ("inspect", "/dev/zero"), (4, 5), r"/dev/zero",
         timeout=15),
    Case("inspect-fifo", ("inspect", "%TMP%/pipe.png"), (4, 5), r"pipe\.png",
         setup=p.fifo("pipe.png")),
    Case("inspect-directory", ("inspect", "%TMP%"), (4, 5), "scratch"),
]


#: Run with REFSTUDIO_HOSTILE=all (see harness.ALL): more variants of the paths above.
EXTENDED = {
    "add-dangling-symlink", "add-dev-null", "add-empty", "add-ico", "add-jpeg-soi-only",
    "add-missing-file", "add-pcx", "add-pdf-named-png", "add-png-bad-crc", "add-svg",
    "add-symlink-to-dev-zero", "add-text-named-jpg", "image-add-fifo", "image-add-text",
    "inspect-directory", "inspect-empty", "inspect-missing", "inspect-png-without-provenance",
    "inspect-text",
}


@pytest.mark.parametrize("case", params(CASES, EXTENDED))
def test_bad_image(case: Case, base: Base, tmp_path: Path) -> None:
    check(case, base, tmp_path)
