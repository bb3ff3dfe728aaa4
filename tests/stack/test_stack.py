"""The local stack end to end: `stack up` through the CLI, every service healthy, an MLflow artifact
landing in the S3 bucket, the process work pool and worker registered, then `stack down` leaving no
process and no listening port behind. Plus the GPU pool's base job template and `hypernet ui`."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.cli_stack import app, ui
from infra import stack
from infra.seaweedfs import SeaweedFSError, find_weed

PROJECT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _needs_weed():
    try:
        find_weed()
    except SeaweedFSError as exc:
        pytest.skip(str(exc))


def _get(url: str) -> tuple[int, bytes]:
    return stack._http("GET", url)


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(item.split("=", 1) for item in f.read().decode().split("\0") if "=" in item)


def _log_and_find_artifact(env: dict[str, str], tmp_path: Path) -> list[str]:
    """Log a tiny artifact through the tracking server (the client knows only its URL) and list the
    bucket with the stack's S3 credentials."""
    import boto3
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=env["HYPERNET_TRACKING__TRACKING_URI"])
    run = client.create_run(client.create_experiment("stack-test"))
    note = tmp_path / "stack-note.txt"
    note.write_text("hello from the stack test")
    client.log_artifact(run.info.run_id, str(note))
    client.set_terminated(run.info.run_id)
    s3 = boto3.client("s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    listing = s3.list_objects_v2(Bucket="hypernet", Prefix="mlflow/")
    return [o["Key"] for o in listing.get("Contents", [])]


@pytest.mark.slow
def test_stack_up_status_down(tmp_path):
    workspace = tmp_path / "ws"
    cli_env = {"HYPERNET_WORKSPACE": str(workspace)}
    try:
        t0 = time.monotonic()
        result = runner.invoke(app, ["up"], env=cli_env)
        assert result.exit_code == 0, result.output
        print(f"stack up: {time.monotonic() - t0:.1f} s")
        state = stack.load_state(workspace)
        assert state is not None and state.ready and set(state.services) == set(stack.START_ORDER)

        result = runner.invoke(app, ["status"], env=cli_env)
        assert result.exit_code == 0, result.output
        assert all(s.healthy for s in stack.status(workspace))
        result = runner.invoke(app, ["up"], env=cli_env)
        assert result.exit_code == 0 and "already up" in result.output

        env = stack.stack_env(workspace)
        assert env is not None
        assert env["HYPERNET_WORKSPACE"] == str(workspace.resolve())
        assert env["HYPERNET_STORAGE__LAKE"] == "s3://hypernet/lake"
        assert env["PREFECT_API_URL"] == state.services["prefect"].url + "/api"
        env_file = workspace / "stack" / "env.sh"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        tracking_uri = env["HYPERNET_TRACKING__TRACKING_URI"]
        assert f"export HYPERNET_TRACKING__TRACKING_URI={tracking_uri}" in env_file.read_text()

        # MLflow: artifacts go through the server to s3://hypernet/mlflow/...
        keys = _log_and_find_artifact(env, tmp_path)
        assert any(k.endswith("/artifacts/stack-note.txt") for k in keys), keys

        # Prefect: the API answers, the process pool exists with a real template, the worker polls it.
        api = env["PREFECT_API_URL"]
        assert _get(f"{api}/health")[0] == 200
        code, body = stack._http("POST", f"{api}/work_pools/filter", {})
        pools = {p["name"]: p for p in json.loads(body)}
        assert pools["hypernet-cpu"]["type"] == "process" and pools["hypernet-cpu"]["base_job_template"]
        assert stack.kubernetes_worker_available() or "hypernet-gpu" not in pools
        assert "prefect-kubernetes" in state.gpu_pool_note or "created" in state.gpu_pool_note
        # The GPU template passes the server's own validation (pool created here by hand, whatever the type).
        template = json.loads(stack.GPU_TEMPLATE.read_text())
        code, body = stack._http("POST", f"{api}/work_pools/", {"name": "template-check", "type": "kubernetes",
                                                                 "base_job_template": template})
        assert code == 201, body

        # The worker's flow runs inherit the stack env and run from the project root.
        worker = state.services["worker"]
        worker_env = _environ(worker.pid)
        for key in ("HYPERNET_TRACKING__TRACKING_URI", "HYPERNET_STORAGE__LAKE", "AWS_SECRET_ACCESS_KEY"):
            assert worker_env[key] == env[key]
        assert worker_env["PREFECT_WORKER_QUERY_SECONDS"] == "2"
        assert os.readlink(f"/proc/{worker.pid}/cwd") == str(stack.PROJECT_DIR) == str(PROJECT)

        # `hypernet ui` with the stack up only points at the stack's MLflow server.
        ui_app = typer.Typer()
        ui_app.command()(ui)
        result = runner.invoke(ui_app, ["--no-browser"], env=cli_env)
        assert result.exit_code == 0 and state.services["mlflow"].url in result.output

        t0 = time.monotonic()
        result = runner.invoke(app, ["down"], env=cli_env)
        assert result.exit_code == 0, result.output
        print(f"stack down: {time.monotonic() - t0:.1f} s")
    finally:
        stack.down(workspace)  # whatever happened above, leave nothing running

    for svc in state.services.values():
        assert not stack.pid_alive(svc.pid) and not stack._group_alive(svc.pid), svc
        assert not any(stack._port_listening(p) for p in svc.ports), svc
    assert stack.load_state(workspace) is None and stack.stack_env(workspace) is None
    assert (workspace / "stack" / "mlflow.db").exists()  # data is kept
    assert runner.invoke(app, ["status"], env=cli_env).exit_code == 1
    result = runner.invoke(app, ["down"], env=cli_env)
    assert result.exit_code == 0 and "No stack was running" in result.output


def test_failed_start_names_the_service_and_leaves_nothing(tmp_path, monkeypatch):
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'boom: no S3 today' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("HYPERNET_WEED_BIN", str(fake))
    with pytest.raises(stack.StackError, match=r"seaweedfs exited.*weed\.log(.|\n)*boom: no S3 today"):
        stack.up(tmp_path / "ws", timeout=30)
    # Prefect and MLflow were launched beside it and must be gone again, and nothing recorded.
    assert stack.load_state(tmp_path / "ws") is None
    assert not [p for p in list(stack._LAUNCHED) if stack.pid_alive(p)]


def _placeholders(value: object) -> set[str]:
    import re

    return set(re.findall(r"{{\s*([\w.]+)\s*}}", json.dumps(value)))


def test_gpu_template_requests_gpus_and_uses_every_variable():
    from prefect.utilities.templating import apply_values
    from prefect.workers.base import BaseJobConfiguration

    template = json.loads(stack.GPU_TEMPLATE.read_text())
    variables = template["variables"]["properties"]
    # A variable missing from job_configuration is silently dropped by Prefect: none may be.
    assert set(variables) == _placeholders(template["job_configuration"])
    assert variables["gpu_count"]["default"] == 1
    defaults = BaseJobConfiguration._get_base_config_defaults(variables)
    job = apply_values(template["job_configuration"], defaults | {"node_selector": {"gpu": "l4"}})
    pod = job["job_manifest"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"gpu": "l4"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["restartPolicy"] == "Never" and pod["containers"][0]["name"] == "prefect-job"


@pytest.mark.slow
def test_ui_runs_mlflow_ui_on_the_workspace_store_until_ctrl_c(tmp_path):
    """Without the stack, `hypernet ui` runs `mlflow ui` on the workspace's SQLite store in the
    foreground; Ctrl-C (SIGINT) stops it and its server child."""
    script = ("import typer; from flows.cli_stack import ui; app = typer.Typer(); "
              "app.command()(ui); app()")
    env = os.environ | {"HYPERNET_WORKSPACE": str(tmp_path / "ws"), "COLUMNS": "200"}
    (tmp_path / "ws").mkdir()
    proc = subprocess.Popen([sys.executable, "-c", script, "--no-browser"], cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url = None
        deadline = time.monotonic() + 90
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "hypernet ui exited early"
            if line.startswith("MLflow UI: "):
                url = line.split(": ", 1)[1].strip()
        assert url and _get(f"{url}/health")[0] == 200
        assert (tmp_path / "ws" / "mlflow.db").exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        port = int(url.rsplit(":", 1)[1])
        assert not stack._group_alive(proc.pid) and not stack._port_listening(port)
    finally:
        if proc.poll() is None or stack._group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
