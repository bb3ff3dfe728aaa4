"""End to end against real services: `stack up` (Prefect server + process worker, MLflow server with
artifacts on SeaweedFS S3), `deploy`, both deployments run by the worker, `stack down`.

Story: 24 schools in the S3 lake and the catalog -> retrain deployment -> v1 @champion, artifacts in
S3, published in the catalog -> retrain with a tiny budget -> v2 stays @challenger -> `hypernet
catalog import` of 6 new schools emits catalog.dataset.registered -> the event starts the onboard
deployment -> weights in S3 and in the catalog -> onboard again changes nothing -> stack down,
nothing left running."""

from __future__ import annotations

import time

import boto3
import pytest
from mlflow import MlflowClient
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from catalog import open_catalog_from_settings
from flows import hsb
from flows.cli import app
from flows.deploy import deploy_all
from flows.fleet_io import import_frame
from flows.settings import Settings
from infra import stack

pytestmark = pytest.mark.slow
FLOW_TIMEOUT = 600


def _run(name: str, **parameters):
    from prefect.deployments import run_deployment

    run = run_deployment(name, parameters=parameters, timeout=FLOW_TIMEOUT, poll_interval=2)
    assert run.state.is_completed(), f"{name}: {run.state}"
    return run


def _wait_for_triggered_run(deployment: str, after: float, timeout: float = 240):
    """The flow run an event started (not one we created): poll the server until it has finished."""
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter

    with get_client(sync_client=True) as client:
        deadline = time.time() + timeout
        while time.time() < deadline:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
                                         flow_run_filter=FlowRunFilter())
            runs = [r for r in runs if r.created and r.created.timestamp() >= after]
            if runs and all(r.state and r.state.is_final() for r in runs):
                return runs
            time.sleep(2)
    raise AssertionError(f"no finished run of {deployment} after the event within {timeout} s")


def _s3_keys(env: dict, prefix: str) -> dict[str, str]:
    s3 = boto3.client("s3", endpoint_url=env["HYPERNET_STORAGE__S3_ENDPOINT_URL"],
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                      region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="hypernet", Prefix=prefix)
    return {o["Key"]: o["ETag"] for p in pages for o in p.get("Contents", [])}


def test_stack_deploy_retrain_onboard_down(tmp_path, small_hsb, pipeline_env, monkeypatch):
    ws = tmp_path / "ws"
    for k, v in pipeline_env(ws).items():
        monkeypatch.setenv(k, v)  # the worker inherits these: a small training budget
    started = time.perf_counter()
    state, _ = stack.up(ws)
    try:
        env = stack.stack_env(ws)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        # This process's Prefect client talks to the stack only inside this block: Prefect reads its
        # settings once, so an environment variable alone would outlive the test.
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            settings = Settings()
            name = settings.tracking.model_name
            fleet, later = small_hsb
            import_frame(settings, fleet, hsb.GROUP, hsb.TARGET, hsb.SCHOOL_META, prefix="hsb")
            assert any(k.startswith("lake/hsb/") for k in _s3_keys(env, "lake/"))
            deploy_all(settings)

            _run("retrain/retrain")
            client = MlflowClient(env["HYPERNET_TRACKING__TRACKING_URI"])
            champion = client.get_model_version_by_alias(name, "champion")
            assert int(champion.version) == 1
            run = client.get_run(champion.run_id)
            assert run.data.metrics["hypernetwork.seen"] > run.data.metrics["pooled.seen"]
            assert any(k.startswith("mlflow/") and "interference" in k for k in _s3_keys(env, "mlflow/")), \
                "run artifacts are not in the S3 server"
            with open_catalog_from_settings(settings) as cat:
                published = cat.list_models(name)
            assert [m.version for m in published] == ["1"] and "champion" in published[0].aliases
            assert len(published[0].trained_on) == 24

            _run("retrain/retrain", max_steps=1)
            assert int(client.get_model_version_by_alias(name, "champion").version) == 1
            assert int(client.get_model_version_by_alias(name, "challenger").version) == 2

            table = tmp_path / "new_schools.parquet"
            later.to_parquet(table)
            emitted_at = time.time()
            out = CliRunner().invoke(app, ["catalog", "import", str(table), "--group", hsb.GROUP, "--target", hsb.TARGET,
                                           "--meta", ",".join(hsb.SCHOOL_META), "--prefix", "hsb"])
            assert out.exit_code == 0, out.output
            assert "catalog.dataset.registered" in out.output
            triggered = _wait_for_triggered_run("onboard", emitted_at)
            assert all(r.state.is_completed() for r in triggered), [r.state for r in triggered]
            weights = _s3_keys(env, f"lake/weights/{name}/v1/")
            assert len(weights) == 6
            with open_catalog_from_settings(settings) as cat:
                onboarded = {r.name: r.onboarding for r in cat.list_fleet() if r.onboarding}
            assert len(onboarded) == 6 and {o.model_version for o in onboarded.values()} == {"1"}

            _run("onboard/onboard")
            assert _s3_keys(env, f"lake/weights/{name}/v1/") == weights
            with open_catalog_from_settings(settings) as cat:
                assert {r.name: r.onboarding for r in cat.list_fleet() if r.onboarding} == onboarded
    finally:
        stack.down(ws)
    assert not stack.leftovers(state)
    print(f"end-to-end: {time.perf_counter() - started:.0f} s")
