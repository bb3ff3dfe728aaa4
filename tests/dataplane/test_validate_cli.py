"""`hypernet validate` (the Typer sub-app): report, exit codes, JSON, results kept."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from flows.cli_validate import app
from flows.fleetgen import make_broken_corpus, make_fleet, write_datasets
from flows.settings import get_settings
from flows.storage import Lake

runner = CliRunner()


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERNET_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield tmp_path / "ws"
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    broken = make_broken_corpus(0)
    write_datasets(make_fleet(3, seed=4, max_rows=300) + broken[:4], root / "mixed")
    write_datasets(broken[4:7], root / "broken")
    return root


def test_mixed_fleet_reports_quarantine_and_exits_0(workspace, folders):
    result = runner.invoke(app, [str(folders / "mixed"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "7 datasets: 3 valid, 4 quarantined" in out and "broken_all_nan_column" in out
    assert "the target is missing from the file" in out and "hospital_000" in out
    summaries = list((workspace / "reports" / "validation").glob("*/summary.json"))
    assert len(summaries) == 1 and json.loads(summaries[0].read_text())["n_valid"] == 3


def test_no_valid_dataset_exits_1_with_a_clear_error(workspace, folders):
    result = runner.invoke(app, [str(folders / "broken"), "--workers", "1"])
    assert result.exit_code == 1
    assert "no valid dataset in the fleet" in result.output and "3 quarantined" in result.output


def test_json_output(workspace, folders):
    result = runner.invoke(app, [str(folders / "mixed"), "--json", "--workers", "1", "--strict"])
    assert result.exit_code == 1  # --strict: some are quarantined
    data = json.loads(result.stdout)
    assert data["n_datasets"] == 7 and {d["name"] for d in data["datasets"] if d["ok"]} == {
        "hospital_000", "hospital_001", "hospital_002"}


def test_demo(workspace):
    result = runner.invoke(app, ["--demo", "--demo-size", "3", "--workers", "1", "--show-valid", "2"])
    assert result.exit_code == 0, result.output
    assert "26 datasets: 3 valid, 23 quarantined" in result.output
    assert (workspace / "demo" / "broken" / "contracts.json").exists()


def test_nothing_to_validate_is_a_usage_error(workspace, tmp_path):
    assert runner.invoke(app, []).exit_code == 2
    result = runner.invoke(app, [str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "Cannot read contracts" in result.output


def test_validate_a_fleet_on_s3(workspace, s3_env, monkeypatch):
    """The manifest and the files live on the SeaweedFS server; the lake comes from settings."""
    prefix = f"s3://{s3_env.bucket}/cli-{uuid.uuid4().hex[:8]}"
    lake = Lake(prefix, endpoint_url=s3_env.endpoint_url, region="us-east-1")
    write_datasets(make_fleet(2, seed=6, max_rows=200) + make_broken_corpus(0)[:2], lake)
    monkeypatch.setenv("HYPERNET_STORAGE__LAKE", prefix)
    get_settings.cache_clear()
    result = runner.invoke(app, [prefix, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "4 datasets: 2 valid, 2 quarantined" in result.output
