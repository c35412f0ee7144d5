"""Media files are what their hash says, or they are not used.

A reference image whose file in ``media/`` is gone or changed is refused before a generation
is recorded (and, for a file changed in between, again by the upload, which hashes the bytes it
reads) and before it is exported; adding the original
again repairs it. A download that turns out corrupt leaves nothing in ``media/``, however often
it is retried.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from conftest import encode_image, run_cli

from refstudio import StorageError, Studio
from refstudio.engine import Engine, EngineSettings, PreparedRequest
from refstudio.engine.retry import Backoff
from refstudio.providers.offline.provider import OfflineProvider


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[Studio]:
    (tmp_path / "mara.png").write_bytes(encode_image((300, 400), seed=1))
    s = Studio.init(tmp_path / "proj")
    try:
        s.provider_options["offline"] = {"cache_dir": tmp_path / "offline"}
        s.add_reference("mara", [tmp_path / "mara.png"])
        yield s
    finally:
        s.close()


def _damage(path: Path) -> None:
    """Swap a media file for another valid PNG: nothing but its hash can tell."""
    path.write_bytes(encode_image((64, 80), seed=99))


def _media_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root / "media").as_posix()
                  for p in (root / "media").rglob("*") if p.is_file())


def _files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("fault", ["changed", "deleted"])
def test_a_damaged_reference_image_is_refused_before_anything_is_recorded(
    studio: Studio, tmp_path: Path, fault: str
) -> None:
    """Before: the generation was recorded, then failed at upload (exit 11, a failed row)."""
    stored = Path(studio.reference("mara").images[0].path)
    if fault == "changed":
        _damage(stored)
    else:
        stored.unlink()
    with pytest.raises(StorageError, match="nothing was recorded or sent") as caught:
        studio.generate("@mara at the harbour", provider="offline", resolution="720p", seed=4)
    assert str(stored) in caught.value.message
    assert caught.value.hint and "backup" in caught.value.hint
    assert studio.history(limit=None) == []
    offline = tmp_path / "offline"
    assert _files(offline / "uploads") == []  # the changed bytes went nowhere
    assert _files(offline / "tasks") == []  # and nothing was sent to be paid for


def test_a_reference_changed_after_recording_is_still_never_uploaded(
    studio: Studio, tmp_path: Path
) -> None:
    """The upload hashes what it reads: a file changed between recording and sending fails
    that generation, and its bytes go nowhere."""
    stored = Path(studio.reference("mara").images[0].path)
    _, [request] = studio.prepare_requests("@mara at the harbour", resolution="720p", seed=4,
                                           provider="offline")

    async def main() -> str:
        provider = OfflineProvider(cache_dir=tmp_path / "offline")
        async with Engine(studio.db, studio.store, provider) as engine:
            gen_id = engine.record(request, 0.0)
            _damage(stored)
            [outcome] = await engine.run([gen_id])
            return outcome.status

    assert asyncio.run(main()) == "failed"
    [gen] = studio.history()
    assert gen.error and str(stored) in gen.error and "hash" in gen.error
    assert _files(tmp_path / "offline" / "uploads") == []
    assert _files(tmp_path / "offline" / "tasks") == []


def test_adding_the_original_again_repairs_the_media_file(studio: Studio, tmp_path: Path) -> None:
    stored = Path(studio.reference("mara").images[0].path)
    _damage(stored)
    studio.add_reference("mara_copy", [tmp_path / "mara.png"])
    assert stored.read_bytes() == (tmp_path / "mara.png").read_bytes()
    [gen] = studio.generate("@mara at the harbour", provider="offline", resolution="720p",
                            seed=4)
    assert gen.status == "completed", gen.error


def test_a_damaged_output_is_not_exported(studio: Studio, tmp_path: Path) -> None:
    [gen] = studio.generate("@mara at dusk", provider="offline", resolution="720p", seed=5)
    output = gen.outputs[0].path
    _damage(output)
    with pytest.raises(StorageError, match=str(output)) as caught:
        studio.export_image(gen.id, 0, tmp_path / "out.png")
    assert caught.value.hint and "backup" in caught.value.hint
    assert not (tmp_path / "out.png").exists()
    done = run_cli("-p", str(studio.root), "export-image", f"{gen.id}:0", "--out",
                   str(tmp_path / "cli.png"))
    assert done.returncode == 13, done.stderr
    assert str(output) in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "cli.png").exists()


def test_a_damaged_image_is_not_packed(studio: Studio, tmp_path: Path) -> None:
    stored = Path(studio.reference("mara").images[0].path)
    _damage(stored)
    done = run_cli("-p", str(studio.root), "export", "mara", "--out", str(tmp_path / "m.zip"))
    assert done.returncode == 13, done.stderr
    assert str(stored) in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "m.zip").exists()


class TruncatingProvider(OfflineProvider):
    """The offline provider whose downloads arrive cut in half (a proxy dropping the tail)."""

    async def download(self, output: str) -> AsyncIterator[bytes]:
        async for chunk in super().download(output):
            yield chunk[: len(chunk) // 2]


def test_a_corrupt_download_leaves_no_file_in_media(studio: Studio, tmp_path: Path) -> None:
    before = _media_files(studio.root)
    settings = EngineSettings(download_attempts=4, default_expected=0.05,
                              poll_backoff=Backoff(base=0.01, cap=0.02))

    async def main() -> str:
        provider = TruncatingProvider(cache_dir=tmp_path / "offline")
        async with Engine(studio.db, studio.store, provider, settings=settings) as engine:
            gen_id = engine.record(PreparedRequest(prompt="a lighthouse", aspect_ratio="1:1",
                                                   resolution="720p", seed=8), 0.0)
            [outcome] = await engine.run([gen_id])
            return outcome.status

    # Paid work whose download failed stays submitted for `resume`; media/ has no orphan.
    assert asyncio.run(main()) == "submitted"
    assert _media_files(studio.root) == before
    # And `resume` with a good download stores exactly the one output.
    [gen] = studio.resume()
    assert gen.status == "completed"
    stored = gen.outputs[0].path
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == gen.outputs[0].sha256
    assert len(_media_files(studio.root)) == len(before) + 1


def test_the_gallery_offers_no_download_of_a_damaged_output(
    studio: Studio, tmp_path: Path
) -> None:
    from refstudio.gallery import build_gallery

    good, bad = studio.generate("@mara at dusk", provider="offline", resolution="720p", n=2,
                                seed=5)
    _damage(bad.outputs[0].path)
    build_gallery(studio, tmp_path / "site")
    downloads = sorted(p.name for p in (tmp_path / "site" / "downloads").iterdir())
    assert downloads == [f"{good.id}-0.png"]
