"""A real S3-protocol endpoint for the tests: moto's standalone server on 127.0.0.1.

refstudio talks to it with the same boto3 client code that talks to AWS; only
``AWS_ENDPOINT_URL`` (and throwaway credentials) differ. ``REFSTUDIO_REQUIRE_S3=1`` (set by
``.ci/run``) turns "moto is not installed" from a skip into a failure.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

#: The bucket every parametrised test stores under (each test in a prefix of its own).
BUCKET = "refstudio-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
               "AWS_REGION": "us-east-1"}


@dataclass
class S3Endpoint:
    url: str
    server: Any

    def env(self) -> dict[str, str]:
        """What a process needs to reach this endpoint (nothing read from ~/.aws)."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.url,
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def start_endpoint() -> S3Endpoint:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        if os.environ.get("REFSTUDIO_REQUIRE_S3") == "1":
            pytest.fail("REFSTUDIO_REQUIRE_S3=1 but moto[server] is not installed")
        pytest.skip("moto[server] is not installed (pip install -e '.[test]')")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = S3Endpoint(f"http://{host}:{port}", server)
    endpoint.client().create_bucket(Bucket=BUCKET)
    return endpoint


def new_media_url() -> str:
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


def stored_objects(endpoint_url: str, media_url: str) -> dict[str, str]:
    """key -> sha256 of every object under ``media_url`` (for "nothing changed" checks)."""
    import boto3

    bucket, _, prefix = media_url[len("s3://"):].partition("/")
    client = boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1")
    found: dict[str, str] = {}
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        return found
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                  Prefix=prefix + "/"):
        for item in page.get("Contents", ()):
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            found[item["Key"][len(prefix) + 1:]] = hashlib.sha256(body).hexdigest()
    return found
