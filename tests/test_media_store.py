"""The media store interface on both backends, and the S3 store under real faults.

Every S3 test talks to a real S3-protocol server (moto's, on 127.0.0.1) through the same boto3
code that talks to AWS. Faults are real too: a bucket that does not exist, a server that
enforces credentials (a second moto server with IAM checks on), and a TCP proxy that cuts the
connection in the middle of an upload. Each ends in one ``error:`` line, exit code 13
(StorageError), nothing half-written, and a paid output that was already downloaded is kept
until ``resume`` stores it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ImageMaker, encode_image, media_keys, run_cli, snapshot_project
from PIL import Image
from project_support import wavespeed_from_env

from refstudio import StorageError, Studio
from refstudio.simulator import Simulator
from refstudio.storage.media import blob_key
from refstudio.storage.mediacache import MediaCache

KEY = "sk-media-store"


def one_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# -- the interface, on both backends (parametrised by conftest) --------------------------------


def test_put_get_exists_size_delete(project: Studio) -> None:
    store = project.store
    data = encode_image((64, 48), seed=4)
    sha = hashlib.sha256(data).hexdigest()
    blob = store.put_bytes(data, extension="png")
    assert blob.key == blob_key(sha, "png") and blob.size == len(data)
    assert store.exists(blob.key) and store.size(blob.key) == len(data)
    assert store.put_bytes(data, extension="png").key == blob.key  # stored once
    assert media_keys(project) == [blob.key]
    with store.open_stream(blob.key) as stream:
        assert stream.read() == data
    assert store.read_verified(blob.key, sha) == data
    copy = store.local_copy(blob.key, sha)
    assert copy.read_bytes() == data
    with pytest.raises(StorageError, match="does not match"):
        store.read_verified(blob.key, "0" * 64)
    store.delete(blob.key)
    assert not store.exists(blob.key) and store.size(blob.key) is None
    assert media_keys(project) == []


def test_put_many_and_stream(project: Studio) -> None:
    import asyncio

    store = project.store
    items = [(encode_image((32, 32), seed=s), "png") for s in (1, 2, 1)]
    blobs = store.put_many(items)
    assert [b.created for b in blobs][:2] == [True, True] and not blobs[2].created
    assert blobs[0].key == blobs[2].key

    async def chunks() -> Iterator[bytes]:  # type: ignore[misc]
        data = encode_image((40, 40), seed=9)
        for i in range(0, len(data), 1000):
            yield data[i:i + 1000]

    blob = asyncio.run(store.put_stream(chunks(), extension="png"))  # type: ignore[arg-type]
    assert store.read_verified(blob.key, blob.sha256) == encode_image((40, 40), seed=9)
    assert len(media_keys(project)) == 3


# -- the local cache ----------------------------------------------------------------------------


def test_cache_is_bounded_and_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "cache" / "media", max_bytes=2500)
    blobs = {name: os.urandom(1000) for name in "abcd"}

    def fetch_of(data: bytes) -> object:
        return lambda fh: fh.write(data)

    paths = {}
    for name in "abc":
        data = blobs[name]
        paths[name] = cache.get(f"{name}.png", hashlib.sha256(data).hexdigest(), fetch_of(data))
        time.sleep(0.02)  # distinct mtimes
    assert not paths["a"].exists()  # 3000 bytes > 2500: the oldest went
    assert paths["b"].exists() and paths["c"].exists()
    os.utime(paths["b"])  # b used again: c is now the least recently used
    time.sleep(0.02)
    cache.get("d.png", hashlib.sha256(blobs["d"]).hexdigest(), fetch_of(blobs["d"]))
    assert paths["b"].exists() and not paths["c"].exists()
    assert cache.total_bytes() <= 2500


def test_a_download_that_does_not_match_its_hash_is_refused(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "media")
    with pytest.raises(StorageError, match="does not match its recorded hash"):
        cache.get("x.png", "0" * 64, lambda fh: fh.write(b"not the bytes"))
    assert not (tmp_path / "media" / "x.png").exists()
    assert not list((tmp_path / "media" / ".tmp").iterdir())


# -- S3 faults ---------------------------------------------------------------------------------


@pytest.fixture
def s3_env(media_backend: str, request: pytest.FixtureRequest,
           monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The S3 run's environment (the fault tests run once, on the S3 parametrisation)."""
    if media_backend != "s3":
        pytest.skip("an S3 fault; runs in the [s3] parametrisation")
    env = request.getfixturevalue("s3_endpoint").env()  # type: ignore[attr-defined]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REFSTUDIO_NO_PROGRESS", "1")
    return env


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    with wavespeed_from_env(monkeypatch, KEY, latency=0.1, seed=11) as server:
        yield server


def test_missing_bucket_is_one_line_and_changes_nothing(
    s3_env: dict[str, str], tmp_path: Path, make_image: ImageMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    Studio.init(tmp_path / "p").close()
    monkeypatch.setenv("REFSTUDIO_MEDIA_URL", "s3://no-such-bucket-here/lib")
    before = snapshot_project(tmp_path / "p")
    line = one_error(run_cli("-p", str(tmp_path / "p"), "ref", "add", "mara",
                             str(make_image(tmp_path / "m.png"))), 13)
    assert "the bucket 'no-such-bucket-here'" in line and "does not exist" in line
    assert snapshot_project(tmp_path / "p") == before  # no row points at a missing key


def test_missing_bucket_before_gen_sends_nothing(
    s3_env: dict[str, str], sim: Simulator, tmp_path: Path, make_image: ImageMaker,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "p"
    with Studio.init(root) as studio:
        studio.add_reference("mara", [make_image(tmp_path / "m.png")])
    monkeypatch.setenv("REFSTUDIO_MEDIA_URL", "s3://gone-bucket/lib")  # e.g. deleted since
    before = snapshot_project(root)
    line = one_error(run_cli("-p", str(root), "gen", "@mara on a pier", "--provider",
                             "wavespeed", "--resolution", "720p"), 13)
    assert "does not exist" in line
    assert sim.stats()["submits_received"] == 0
    assert snapshot_project(root) == before


@pytest.fixture
def strict_endpoint() -> Iterator[str]:
    """A second moto server that checks credentials (IAM auth on from the first request)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_no_permission_is_one_line_without_the_secret(
    s3_env: dict[str, str], strict_endpoint: str, tmp_path: Path, make_image: ImageMaker
) -> None:
    Studio.init(tmp_path / "p").close()
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY-SECRET"
    env = {"AWS_ENDPOINT_URL": strict_endpoint, "AWS_ACCESS_KEY_ID": "AKIAUNKNOWNKEY1234",
           "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": "us-east-1",
           "REFSTUDIO_MEDIA_URL": "s3://team-bucket/lib"}
    before = snapshot_project(tmp_path / "p")
    result = run_cli("-p", str(tmp_path / "p"), "ref", "add", "mara",
                     str(make_image(tmp_path / "m.png")), env=env)
    line = one_error(result, 13)
    assert "no permission" in line and "s3://team-bucket/lib" in line
    assert secret not in result.stderr + result.stdout
    assert snapshot_project(tmp_path / "p") == before


def test_credentials_in_the_url_are_refused_without_echoing_them(tmp_path: Path) -> None:
    Studio.init(tmp_path / "p").close()
    result = run_cli("-p", str(tmp_path / "p"), "ref", "list",
                     env={"REFSTUDIO_MEDIA_URL": "s3://AKIAXX:topsecret@bucket/lib"})
    line = one_error(result, 3)
    assert "no credentials" in line and "topsecret" not in result.stderr


class CuttingProxy:
    """A TCP proxy in front of the S3 server. While ``cut`` is set, a connection that sends
    more than ``limit`` bytes (an upload, not a HEAD) is closed in the middle of the request."""

    def __init__(self, target: str, limit: int = 4096) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.limit = limit
        self.cut = False
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, outgoing: bool) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                sent += len(data)
                if outgoing and self.cut and sent > self.limit:
                    self.cuts += 1
                    dst.sendall(data[: self.limit // 2])  # part of the body, then nothing
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_network_drop_mid_upload_keeps_the_paid_output_until_resume(
    s3_env: dict[str, str], sim: Simulator, tmp_path: Path, make_image: ImageMaker,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = CuttingProxy(s3_env["AWS_ENDPOINT_URL"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        root = tmp_path / "p"
        with Studio.init(root) as studio:
            studio.add_reference("mara", [make_image(tmp_path / "m.png", seed=1)])
            keys_before = media_keys(studio)
        proxy.cut = True
        result = run_cli("-p", str(root), "gen", "@mara on a pier", "--provider", "wavespeed",
                         "--resolution", "720p", "--seed", "40")
        line = one_error(result, 13)
        assert "connection" in line and "kept at" in line, line
        assert proxy.cuts > 0
        assert sim.stats()["submits_received"] == 1
        spooled = [p for p in (root / ".cache" / "spool").rglob("*.png")]
        assert len(spooled) == 1  # the paid image, whole, waiting
        with Image.open(spooled[0]) as img:
            img.load()
        with Studio.open(root) as studio:
            # Nothing half-written: no new object, no output row, the generation resumable.
            assert media_keys(studio) == keys_before
            gen = studio.generation(1)
            assert gen.status == "submitted" and gen.outputs == ()

        proxy.cut = False
        resumed = run_cli("-p", str(root), "resume")
        assert resumed.returncode == 0, resumed.stderr
        assert sim.stats()["submits_received"] == 1  # nothing sent again
        with Studio.open(root) as studio:
            gen = studio.generation(1)
            assert gen.status == "completed"
            [output] = gen.outputs
            assert output.key in media_keys(studio)
            assert hashlib.sha256(output.data()).hexdigest() == output.sha256
        assert not list((root / ".cache" / "spool").rglob("*.png"))
    finally:
        proxy.close()


def test_a_remote_copy_is_fetched_once_and_verified(
    s3_env: dict[str, str], tmp_path: Path, make_image: ImageMaker
) -> None:
    root = tmp_path / "p"
    with Studio.init(root) as studio:
        studio.add_reference("mara", [make_image(tmp_path / "m.png", seed=2)])
        image = studio.reference("mara").images[0]
        assert image.location.startswith("s3://")
        local = Path(image.path)  # fetched on demand into the project's cache
        assert local.is_relative_to(root / ".cache")
        assert hashlib.sha256(local.read_bytes()).hexdigest() == image.sha256
        # Changed in the bucket behind refstudio's back: a fresh copy is refused.
        local.unlink()
        url = os.environ["REFSTUDIO_MEDIA_URL"]
        bucket, _, prefix = url[len("s3://"):].partition("/")
        client = __import__("s3support").S3Endpoint(s3_env["AWS_ENDPOINT_URL"], None).client()
        client.put_object(Bucket=bucket, Key=f"{prefix}/{image.key}", Body=b"tampered")
        with pytest.raises(StorageError, match="does not match its recorded hash"):
            _ = image.path


def test_doctor_checks_the_objects_of_a_remote_store(
    s3_env: dict[str, str], tmp_path: Path, make_image: ImageMaker
) -> None:
    import json

    root = tmp_path / "p"
    with Studio.init(root) as studio:
        studio.add_reference("mara", [make_image(tmp_path / "m.png", seed=3)])
        studio.add_reference("bob", [make_image(tmp_path / "b.png", seed=4)])
        keys = {r.name: r.images[0].key for r in studio.references()}
    done = run_cli("-p", str(root), "doctor", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    url = os.environ["REFSTUDIO_MEDIA_URL"]
    bucket, _, prefix = url[len("s3://"):].partition("/")
    client = __import__("s3support").S3Endpoint(s3_env["AWS_ENDPOINT_URL"], None).client()
    client.delete_object(Bucket=bucket, Key=f"{prefix}/{keys['bob']}")
    client.put_object(Bucket=bucket, Key=f"{prefix}/ab/cd/stray.png", Body=b"x")
    done = run_cli("-p", str(root), "doctor", "--json")
    report = json.loads(done.stdout)
    assert report["ok"] is False
    kinds = {(f["kind"], f["severity"]) for f in report["findings"]}
    assert ("missing-file", "problem") in kinds and ("orphan-object", "notice") in kinds
    assert any(keys["bob"] in f["message"] for f in report["findings"])


def test_storage_copy_moves_every_image_there_and_back(
    s3_env: dict[str, str], tmp_path: Path, make_image: ImageMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder library copied to S3 and back: every image, hashes verified, the library
    unchanged; a second copy writes nothing."""
    import json

    s3_url = os.environ["REFSTUDIO_MEDIA_URL"]
    monkeypatch.delenv("REFSTUDIO_MEDIA_URL")
    root = tmp_path / "p"
    with Studio.init(root) as studio:
        studio.add_reference("mara", [make_image(tmp_path / "m.png", seed=5),
                                      make_image(tmp_path / "n.png", seed=6)])
        studio.generate("@mara at dawn", provider="offline", resolution="720p", seed=1)
        assets = {k: hashlib.sha256(studio.store.read_bytes(k)).hexdigest()
                  for k in media_keys(studio)}
    before = snapshot_project(root)
    done = run_cli("-p", str(root), "storage", "copy", "--media-url", s3_url, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["copied"] == len(assets) == 3
    again = run_cli("-p", str(root), "storage", "copy", "--media-url", s3_url, "--json")
    assert json.loads(again.stdout)["copied"] == 0
    assert snapshot_project(root) == before  # the library itself is untouched
    monkeypatch.setenv("REFSTUDIO_MEDIA_URL", s3_url)
    with Studio.open(root) as studio:  # the same rows, now served from the bucket
        assert {k: hashlib.sha256(studio.store.read_bytes(k)).hexdigest()
                for k in media_keys(studio)} == assets
        [gen] = studio.history()
        assert gen.outputs[0].image().size == (1280, 720)
    back = run_cli("-p", str(root), "storage", "copy", "--media-url", "file:media-copy",
                   "--json")
    assert back.returncode == 0, back.stderr
    copied = root / "media-copy"
    assert {p.relative_to(copied).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in copied.rglob("*.png") if ".tmp" not in p.parts} == assets
    line = one_error(run_cli("-p", str(root), "storage", "copy", "--media-url",
                             "s3://no-such-bucket-x/lib"), 13)
    assert "does not exist" in line
