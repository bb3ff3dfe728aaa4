"""The main job (`hypernet demo`) end to end on embedded defaults: HSB through the retraining and
onboarding flows on Prefect's temporary server, MLflow on SQLite, DataHub Lite. Fixed seeds."""

import json

import pytest
from mlflow import MlflowClient
from rich.console import Console

from catalog import open_catalog_from_settings
from flows.demo import run_demo
from flows.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # the flows read their settings from the environment
        mp.setenv("HYPERNET_WORKSPACE", str(tmp_path_factory.mktemp("ws")))
        console = Console(record=True, width=120)
        report = run_demo(Settings(), console)
        yield Settings(), report, console.export_text()


def test_demo_trains_registers_and_onboards(demo):
    settings, report, _ = demo
    with open_catalog_from_settings(settings) as cat:
        fleet = cat.list_fleet()
        models = cat.list_models(settings.tracking.model_name)
    assert len(fleet) == 160
    assert report["n_datasets"] == 140 - len(report["quarantined"]) and len(report["quarantined"]) <= 5
    assert report["version"] == 1 and report["alias"] == "champion"
    assert int(MlflowClient(settings.tracking_uri).get_model_version_by_alias(
        settings.tracking.model_name, "champion").version) == 1
    assert [m.version for m in models] == ["1"] and len(models[0].trained_on) == report["n_datasets"]
    onboarded = [r for r in fleet if r.onboarding]
    assert len(onboarded) == len(report["onboarded"]["onboarded"]) and 15 <= len(onboarded) <= 20
    assert all(r.onboarding.model_version == "1" for r in onboarded)


def test_demo_quality(demo):
    _, report, _ = demo
    m = report["models"]
    hyper = m["hypernetwork"]
    assert hyper["seen"] > m["pooled"]["seen"] + 0.02          # specialisation pays on seen schools
    assert hyper["seen"] > m["per_dataset"]["seen"] + 0.03     # and sharing pays over isolation
    assert hyper["unseen"] > m["pooled"]["unseen"] + 0.01      # meta-features transfer to new schools
    assert hyper["params"]["total"] < m["per_dataset"]["params"]["total"] / 10
    onboarding = report["onboarding"]
    assert onboarding["zero_shot"] > 0.1 and onboarding["few_shot"] > onboarding["zero_shot"] - 0.02


def test_demo_prints_and_writes_its_report(demo):
    settings, report, text = demo
    saved = json.loads((settings.reports_dir / "demo.json").read_text())
    assert saved["models"]["hypernetwork"]["seen"] == pytest.approx(report["models"]["hypernetwork"]["seen"])
    assert "hypernetwork (ours)" in text and "Onboarded with champion v1" in text and "hypernet ui" in text
    for png in ("interference.png", "gains_over_pooled.png"):
        assert (settings.reports_dir / "retrain" / png).stat().st_size > 10_000
