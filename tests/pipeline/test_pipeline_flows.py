"""The retraining and onboarding flows on embedded defaults (Prefect test server, MLflow on SQLite,
DataHub Lite, local lake), on 24 real schools plus 6 onboarded later.

One workspace for the module, in story order: first retraining -> champion; a worse challenger is
not promoted; onboarding -> weights; onboarding again changes nothing; two runs at once onboard
each dataset once."""

from __future__ import annotations

import threading

import pytest
from mlflow import MlflowClient

from flows import hsb
from flows.fleet_io import import_frame
from flows.settings import Settings
from flows.storage import Lake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, small_hsb, pipeline_env):
    ws = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in pipeline_env(ws).items():
            mp.setenv(k, v)
        fleet, _ = small_hsb
        import_frame(Settings(), fleet, hsb.GROUP, hsb.TARGET, hsb.SCHOOL_META, prefix="hsb")
        yield ws


@pytest.fixture(scope="module")
def first(workspace):
    from flows.train import retrain

    return retrain()


def _client() -> MlflowClient:
    return MlflowClient(Settings().tracking_uri)


def test_first_version_becomes_champion_with_everything_logged(first):
    s = Settings()
    assert first["version"] == 1 and first["alias"] == "champion"
    assert "no champion" in " ".join(first["reasons"])
    client = _client()
    assert int(client.get_model_version_by_alias(s.tracking.model_name, "champion").version) == 1
    run = client.get_run(first["run_id"])
    assert run.data.metrics["hypernetwork.seen"] == pytest.approx(first["report"]["models"]["hypernetwork"]["seen"])
    assert {"pooled.seen", "task_conditioned.unseen"} <= set(run.data.metrics)
    files = {a.path for a in client.list_artifacts(first["run_id"])} | {
        a.path for d in ("figures", "tables") for a in client.list_artifacts(first["run_id"], d)}
    names = " ".join(files)
    for expected in ("interference", "gains", "datasets", "validation", "settings", "per_dataset"):
        assert expected in names, f"{expected} missing from {sorted(files)}"

    with _catalog(s) as cat:
        models = cat.list_models(s.tracking.model_name)
    assert [m.version for m in models] == ["1"]
    assert "champion" in models[0].aliases
    assert len(models[0].trained_on) == first["datasets"] == 24


def test_worse_challenger_is_not_promoted(first):
    from flows.train import retrain

    second = retrain(max_steps=1)
    s = Settings()
    assert second["version"] == 2 and second["alias"] == "challenger"
    assert any("champion" in r for r in second["reasons"])
    client = _client()
    assert int(client.get_model_version_by_alias(s.tracking.model_name, "champion").version) == 1
    assert int(client.get_model_version_by_alias(s.tracking.model_name, "challenger").version) == 2
    assert second["champion"]["version"] == 1
    assert second["transfer"]["backward_vs_champion"] < 0  # it lost ground on the datasets v1 knew
    assert "transfer.backward_vs_champion" in client.get_run(second["run_id"]).data.metrics


def test_onboarding_generates_weights_once(first, small_hsb):
    from flows.onboard import onboard

    s = Settings()
    _, later = small_hsb
    new = import_frame(s, later, hsb.GROUP, hsb.TARGET, hsb.SCHOOL_META, prefix="hsb")
    result = onboard()
    assert result["champion"] == 1
    assert sorted(d["name"] for d in result["onboarded"]) == sorted(r.name for r in new)
    assert all(d["how"].startswith(("few-shot", "zero-shot")) for d in result["onboarded"])
    assert result["summary"]["datasets"] >= 1 and -1 < result["summary"]["few_shot"] <= 1
    lake = Lake.from_settings(s)
    stored = {d["location"]: lake.read_bytes(d["location"]) for d in result["onboarded"]}
    assert all(b for b in stored.values())
    with _catalog(s) as cat:
        for r in new:
            assert cat.get(r.urn).onboarding.model_version == "1"
        assert len(cat.list_models(s.tracking.model_name, generated_weights=True)) == len(new)
    runs_before = _client().search_runs([_client().get_experiment_by_name(s.tracking.experiment).experiment_id])

    again = onboard()
    assert again["onboarded"] == [] and again["run_id"] is None
    assert {loc: lake.read_bytes(loc) for loc in stored} == stored
    runs_after = _client().search_runs([_client().get_experiment_by_name(s.tracking.experiment).experiment_id])
    assert len(runs_after) == len(runs_before)


def test_two_onboarding_runs_at_once_onboard_each_dataset_once(first, small_hsb):
    from flows.onboard import onboard

    s = Settings()
    fleet, _ = small_hsb
    extra = fleet[fleet[hsb.GROUP].isin(sorted(fleet[hsb.GROUP].unique())[:3])].copy()
    extra[hsb.GROUP] = "copy_" + extra[hsb.GROUP]
    new = import_frame(s, extra, hsb.GROUP, hsb.TARGET, hsb.SCHOOL_META, prefix="hsb")
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(onboard())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = sorted(d["name"] for r in results for d in r["onboarded"])
    assert names == sorted(r.name for r in new)


def _catalog(settings):
    from catalog import open_catalog_from_settings

    return open_catalog_from_settings(settings)
