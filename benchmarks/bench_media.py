"""Media put/get throughput: refstudio's stores next to raw clients doing the same transfers.

    python benchmarks/bench_media.py [--count 20] [--mb 2] [--base COMMIT]

S3: an S3-protocol server (moto's standalone server, in its own process on 127.0.0.1) and, in
one run, for ``--count`` incompressible blobs of ``--mb`` MB:

* refstudio ``S3MediaStore.put_bytes`` (HEAD, then PUT with the hash as metadata) one by one,
  next to a raw boto3 ``put_object`` of the same bytes;
* ``put_many`` (a batch, requests in parallel) next to raw boto3 ``put_object`` on a pool of the
  same size;
* ``read_verified`` with a cold cache (GET + SHA-256) next to raw ``get_object().read()``;
* ``local_copy`` with a cold cache (download into the cache, verify) next to raw
  ``download_fileobj`` into a file.

Local folder: ``LocalMediaStore.put_bytes`` (write, fsync, rename) and ``read_verified`` on this
checkout and, with ``--base`` (default: the commit before the media interface), on that commit
in a subprocess; the floor is a raw file copy of the same bytes (``shutil.copyfile`` + fsync).

Prints MB/s; asserts nothing about timing. Needs the ``test`` extra (boto3, moto[server]).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BASE = "8d5e883"  # main before the media interface (issue 14)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def blobs(count: int, mb: float) -> list[bytes]:
    return [os.urandom(int(mb * 1e6)) for _ in range(count)]


# -- local folder --------------------------------------------------------------------------------


def local_figures(count: int, mb: float, runs: int = 3) -> dict[str, float]:
    """Seconds (best of ``runs``) for put and read of every blob, and the raw-copy floor."""
    data = blobs(count, mb)
    shas = [hashlib.sha256(d).hexdigest() for d in data]
    best: dict[str, float] = {}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            for name, value in _local_round(Path(tmp), data, shas).items():
                best[name] = min(best.get(name, value), value)
    return best


def _local_round(root: Path, data: list[bytes], shas: list[str]) -> dict[str, float]:
    from refstudio.storage.media import LocalMediaStore

    (root / "media").mkdir()
    store = LocalMediaStore(root / "media")
    keys: list[str] = []
    put = timed(lambda: keys.extend(store.put_bytes(d, extension="png").key for d in data))
    read = timed(lambda: [store.read_verified(k, s) for k, s in zip(keys, shas, strict=True)])
    sources = []
    for i, d in enumerate(data):
        src = root / f"src{i}"
        src.write_bytes(d)
        sources.append(src)

    def copy_floor() -> None:
        for i, src in enumerate(sources):
            target = root / f"copy{i}"
            shutil.copyfile(src, target)
            with open(target, "rb") as fh:
                os.fsync(fh.fileno())

    return {"put": put, "read": read, "copy": timed(copy_floor)}


def local_base_figures(base: str, count: int, mb: float) -> dict[str, float] | None:
    """The same local figures from the code at ``base`` (a git commit), in a subprocess."""
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(repo), "archive", base, "refstudio"],
                                 capture_output=True)
        if archive.returncode != 0:
            return None
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        done = subprocess.run(
            [sys.executable, __file__, "--local-json", "--count", str(count), "--mb", str(mb)],
            env={**os.environ, "PYTHONPATH": tmp}, capture_output=True, text=True, cwd=tmp)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return None
        return json.loads(done.stdout)


# -- S3 ----------------------------------------------------------------------------------------


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def s3_figures(count: int, mb: float) -> list[tuple[str, float, float]]:
    """(what, refstudio seconds, raw boto3 seconds) for each transfer."""
    from refstudio.storage.media import blob_key
    from refstudio.storage.mediacache import MediaCache
    from refstudio.storage.s3store import BATCH_THREADS, S3MediaStore

    proc, url = start_server()
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1")
    import boto3

    raw = boto3.client("s3")
    rows = []
    try:
        raw.create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory() as tmp:
            cache_root = Path(tmp) / "cache" / "media"
            store = S3MediaStore("bench", "store", MediaCache(cache_root))
            store.check_writable()  # the client is made (and connected) before timing
            raw.head_bucket(Bucket="bench")

            data = blobs(count, mb)
            shas = [hashlib.sha256(d).hexdigest() for d in data]
            keys = [blob_key(s, "png") for s in shas]
            ours = timed(lambda: [store.put_bytes(d, extension="png") for d in data])
            theirs = timed(lambda: [raw.put_object(Bucket="bench", Key=f"raw/{k}", Body=d)
                                    for k, d in zip(keys, data, strict=True)])
            rows.append(("put, one by one", ours, theirs))

            batch = blobs(count, mb)
            bkeys = [blob_key(hashlib.sha256(d).hexdigest(), "png") for d in batch]
            ours = timed(lambda: store.put_many((d, "png") for d in batch))
            with ThreadPoolExecutor(BATCH_THREADS) as pool:
                theirs = timed(lambda: list(pool.map(
                    lambda kd: raw.put_object(Bucket="bench", Key=f"rawb/{kd[0]}", Body=kd[1]),
                    zip(bkeys, batch, strict=True))))
            rows.append(("put, a batch", ours, theirs))

            shutil.rmtree(cache_root, ignore_errors=True)  # cold: every read is a GET
            ours = timed(lambda: [store.read_verified(k, s)
                                  for k, s in zip(keys, shas, strict=True)])
            theirs = timed(lambda: [raw.get_object(Bucket="bench", Key=f"raw/{k}")["Body"].read()
                                    for k in keys])
            rows.append(("get (verified)", ours, theirs))

            shutil.rmtree(cache_root, ignore_errors=True)
            ours = timed(lambda: [store.local_copy(k, s)
                                  for k, s in zip(keys, shas, strict=True)])
            out = Path(tmp) / "raw"
            out.mkdir()

            def raw_download() -> None:
                for i, k in enumerate(keys):
                    with open(out / str(i), "wb") as fh:
                        raw.download_fileobj("bench", f"raw/{k}", fh)

            theirs = timed(raw_download)
            rows.append(("local copy (download)", ours, theirs))
            store.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--mb", type=float, default=2.0)
    parser.add_argument("--base", default=BASE, help="commit for the local 'before' figures")
    parser.add_argument("--local-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.local_json:
        print(json.dumps(local_figures(args.count, args.mb)))
        return
    total = args.count * args.mb

    def rate(seconds: float) -> str:
        return f"{total / seconds:8.1f} MB/s"

    print(f"{args.count} blobs x {args.mb} MB ({total:.0f} MB per transfer)\n")
    print("S3 endpoint (moto server on 127.0.0.1)     refstudio          raw boto3")
    for what, ours, theirs in s3_figures(args.count, args.mb):
        print(f"  {what:<40} {rate(ours)}   {rate(theirs)}   ({ours / theirs:.2f}x)")

    now = local_figures(args.count, args.mb)
    before = local_base_figures(args.base, args.count, args.mb)
    print(f"\nlocal folder (best of 3)                   this checkout      {args.base}")
    for what, key in (("put (write, fsync, rename)", "put"), ("read (verified)", "read"),
                      ("floor: raw file copy + fsync", "copy")):
        old = rate(before[key]) if before else "   (n/a)"
        print(f"  {what:<40} {rate(now[key])}   {old}")


if __name__ == "__main__":
    main()
