"""An S3 API server of the test session's own: moto's (``moto[server]`` from PyPI, a dev
dependency), started on a free loopback port when a test first asks for it and stopped, by
pid, at the end of the session. Each test takes a bucket of its own (``s3_bucket``) and
empties and deletes it afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from headwater.stack import process
from tests.integration.services import free_ports

__all__ = ["S3Bucket", "s3_bucket", "s3_endpoint"]

REGION = "us-east-1"
# moto accepts any credentials; these stand in for a real key pair and travel as secrets.
ACCESS_KEY_ID = "AKIAHEADWATERTEST"
SECRET_ACCESS_KEY = "headwater-test-secret-never-shown"


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    (port,) = free_ports(1)
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        ok = process.wait_until(lambda: process.port_open("127.0.0.1", port), 60, 0.2)
        assert ok, f"moto did not listen on {port}: {Path(log).read_text()[-2000:]}"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate(server.pid, timeout_s=10)
        server.wait(timeout=10)


@dataclass
class S3Bucket:
    endpoint: str
    name: str

    @property
    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        )

    def offline(self, prefix: str = "offline") -> dict[str, Any]:
        """The ``offline`` settings section for ``s3://<bucket>/<prefix>`` on this server."""
        return {
            "url": f"s3://{self.name}/{prefix}",
            "storage_options": {
                "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_REGION": REGION,
                "AWS_ALLOW_HTTP": "true",
            },
            "secret_options": {
                "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            },
        }

    def object_keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        )
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[S3Bucket]:
    bucket = S3Bucket(s3_endpoint, f"headwater-test-{uuid.uuid4().hex[:12]}")
    bucket.client.create_bucket(Bucket=bucket.name)
    try:
        yield bucket
    finally:
        client = bucket.client
        for key in bucket.object_keys():
            client.delete_object(Bucket=bucket.name, Key=key)
        client.delete_bucket(Bucket=bucket.name)
