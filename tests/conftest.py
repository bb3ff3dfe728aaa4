"""Shared test setup: quiet, contained services and deterministic torch."""

import atexit
import os
import shutil
import tempfile

_PREFECT_HOME = tempfile.mkdtemp(prefix="hypernet-tests-prefect-")
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)

for key, value in {
    # Flows run on Prefect's temporary local server (one per test process), its state in a temp folder.
    "PREFECT_HOME": _PREFECT_HOME,
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DATAHUB_TELEMETRY_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}.items():
    os.environ.setdefault(key, value)

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session", autouse=True)
def _stop_prefect_temporary_server():
    """Stop Prefect's temporary server (started by the first flow run) while pytest still owns the
    output streams; left to interpreter exit, its goodbye log line hits a closed stream."""
    yield
    import sys

    server = sys.modules.get("prefect.server.api.server")  # None when no test ran a flow
    if server is None:
        return
    for instance in list(server.SubprocessASGIServer._instances.values()):
        if instance.running:
            instance.stop()
