"""Fixtures for the data plane: a SeaweedFS S3 server for the session, and a lake per backend.

Tests that take the `lake` fixture run twice: on a local folder and on the SeaweedFS server
(skipped, not failed, where the `weed` binary is not installed). Each test gets its own prefix,
so tests never see each other's objects.
"""

from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")

from flows.storage import Lake  # noqa: E402
from infra.seaweedfs import SeaweedFS, SeaweedFSError, find_weed  # noqa: E402

BACKENDS = ("local", "s3")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """One `weed mini` for the whole session, stopped (by PID) when the session ends."""
    try:
        find_weed()
    except SeaweedFSError as exc:
        pytest.skip(str(exc))
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"), bucket="hypernet-test")
    with server:
        yield server


@pytest.fixture(scope="session")
def s3_env(seaweed):
    """The server's credentials in the environment, where boto3 (and only boto3) reads them."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in seaweed.client_env().items():
            mp.setenv(key, value)
        yield seaweed


def make_lake(backend: str, tmp_path, request) -> Lake:
    if backend == "local":
        return Lake(tmp_path / "lake")
    server = request.getfixturevalue("s3_env")
    return Lake(f"s3://{server.bucket}/{uuid.uuid4().hex[:12]}", endpoint_url=server.endpoint_url,
                region="us-east-1")


@pytest.fixture(params=BACKENDS)
def lake(request, tmp_path) -> Lake:
    """An empty lake on each backend in turn."""
    return make_lake(request.param, tmp_path, request)
