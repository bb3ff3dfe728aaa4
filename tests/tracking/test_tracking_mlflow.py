"""The MLflow adapter against a real SQLite tracking store: the served fleet model, the registry and
what a training run logs. A tiny hypernetwork is trained once per module (seconds)."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows import tracking
from flows.settings import Settings
from hypernet_core import DatasetTable, FleetEncoder, FleetError, ModelConfig, TrainConfig, build_model, fit, predict
from hypernet_core.export import generate
from hypernet_core.io import load_model, save_model, state_equal
from hypernet_core.synthetic import synthetic_fleet

MODEL_NAME = "fleet-test"
TINY = ModelConfig(hidden=(16,), embed_dim=4, cond_dim=16)
QUICK = TrainConfig(max_steps=30, datasets_per_batch=4, rows_per_dataset=8, accumulate=1, eval_every=10,
                    progress=False)


def train_tiny(tables, task="regression"):
    enc = FleetEncoder.fit(tables, task=task)
    model = build_model("hypernetwork", TINY, enc.n_features, enc.meta_dim, enc.out_dim, len(tables), seed=0)
    fit(model, enc.transform(tables), QUICK)
    return model, enc


@pytest.fixture(scope="module")
def fleet():
    tables = synthetic_fleet(6, rows=30, n_features=3, missing_features=0.4, seed=3)
    return tables[:4], tables[4:]  # trained on, new


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, fleet):
    train, _ = fleet
    model, enc = train_tiny(train)
    return save_model(tmp_path_factory.mktemp("model") / "model", model, enc, TINY,
                      extra={"dataset_meta": {t.name: t.meta for t in train}})


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    s = Settings(workspace=ws, tracking={"tracking_uri": f"sqlite:///{ws}/mlflow.db", "experiment": "tests",
                                         "model_name": MODEL_NAME})
    previous = mlflow.get_tracking_uri()
    tracking.configure(s)
    yield s
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def champion(settings, model_dir, fleet):
    """The model logged in a run, registered as version 1 and aliased champion."""
    frame = mixed_frame(*fleet)[0]
    with mlflow.start_run(run_name="train") as run:
        info = tracking.log_fleet_model(model_dir, input_example=frame.head(3))
    version = tracking.register_version(info.model_uri, MODEL_NAME, tags={"gate": "champion"})
    tracking.set_alias(MODEL_NAME, tracking.CHAMPION, version)
    return SimpleNamespace(info=info, version=version, run_id=run.info.run_id)


def rows_of(t: DatasetTable, idx) -> dict[str, np.ndarray]:
    return {f: np.asarray(v)[idx] for f, v in t.features.items()}


def mixed_frame(train, new, features=("f0", "f1", "f2")):
    """Rows of two known datasets, one new named dataset and one new unnamed dataset, shuffled."""
    parts = []
    for t, n, named, with_meta in ((train[0], 5, True, False), (train[1], 3, True, False),
                                   (new[0], 4, True, True), (new[1], 3, False, True)):
        part = pd.DataFrame({f: t.features.get(f, np.full(t.n_rows, np.nan))[:n] for f in features})
        part.insert(0, "dataset", t.name if named else None)
        for k, v in t.meta.items():
            part[f"meta.{k}"] = v if with_meta else None
        part["_source"] = t.name
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.iloc[np.random.default_rng(0).permutation(len(frame))].reset_index(drop=True)
    frame.loc[0, "f0"] = np.nan  # a missing value inside a known dataset's row
    source = frame.pop("_source")
    for col in [c for c in frame.columns if c.startswith("meta.") and c != "meta.region"]:
        frame[col] = frame[col].astype(float)
    return frame, source


def expected_predictions(model_dir, frame, source, train_names):
    """What hypernet_core gives directly: the model for known datasets, generated weights for new ones."""
    model, enc, spec = load_model(model_dir)
    x = frame[enc.features].to_numpy(dtype=float)
    out = np.full(len(frame), np.nan)
    for name in source.unique():
        idx = np.flatnonzero(source == name)
        if name in train_names:
            table = DatasetTable(name, {f: x[idx, j] for j, f in enumerate(enc.features)}, np.zeros(len(idx)),
                                 spec["dataset_meta"][name])
            out[idx] = enc.decode_target(predict(model, enc.transform([table]))[:, 0].numpy())
        else:
            meta = {c[5:]: frame.loc[idx[0], c] for c in frame.columns if c.startswith("meta.")}
            out[idx] = generate(model, enc, name, meta).predict(x[idx])
    return out


# ---- the served model ----------------------------------------------------------------------------------
def test_champion_from_the_registry_predicts_known_and_new_datasets_in_one_frame(champion, model_dir, fleet):
    train, new = fleet
    frame, source = mixed_frame(train, new)
    served = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    got = served.predict(frame)
    assert list(got.columns) == ["prediction"] and len(got) == len(frame)
    want = expected_predictions(model_dir, frame, source, {t.name for t in train})
    known = source.isin([t.name for t in train]).to_numpy()
    np.testing.assert_allclose(got["prediction"].to_numpy()[known], want[known], atol=1e-5)
    np.testing.assert_allclose(got["prediction"].to_numpy()[~known], want[~known], atol=1e-4)


def test_registry_helpers(champion, settings):
    assert champion.version == 1
    assert tracking.champion_version(MODEL_NAME) == 1
    assert tracking.alias_version(MODEL_NAME, tracking.CHALLENGER) is None
    assert tracking.champion_version("no-such-model") is None
    assert tracking.version_run_id(MODEL_NAME, "champion") == champion.run_id  # found via the LoggedModel
    assert tracking.version_tags(MODEL_NAME, 1) == {"gate": "champion"}
    tracking.set_version_tags(MODEL_NAME, 1, {"reasons": "first version: no champion"})
    assert tracking.version_tags(MODEL_NAME, "champion")["reasons"] == "first version: no champion"
    assert tracking.model_uri(MODEL_NAME, 3) == f"models:/{MODEL_NAME}/3"
    assert tracking.model_uri(MODEL_NAME, "champion") == f"models:/{MODEL_NAME}@champion"


def test_second_version_as_challenger_keeps_the_champion(champion, model_dir):
    with mlflow.start_run(run_name="retrain") as run:
        info = tracking.log_fleet_model(model_dir)
        version = tracking.register_version(info.model_uri, MODEL_NAME, run.info.run_id, tags={"gate": "challenger"})
    tracking.set_alias(MODEL_NAME, tracking.CHALLENGER, version)
    assert version == champion.version + 1
    assert tracking.champion_version(MODEL_NAME) == champion.version
    assert tracking.alias_version(MODEL_NAME, tracking.CHALLENGER) == version
    assert tracking.version_run_id(MODEL_NAME, version) == run.info.run_id


def test_download_model_dir_gives_the_saved_folder(champion, model_dir, tmp_path):
    folder = tracking.download_model_dir(MODEL_NAME, "champion", tmp_path)
    assert {"model.safetensors", "model.json"} <= {p.name for p in folder.iterdir()}
    got, enc, spec = load_model(folder)
    want, want_enc, _ = load_model(model_dir)
    assert state_equal(got, want) and enc == want_enc and "dataset_meta" in spec


def test_logged_model_carries_code_requirements_and_an_all_optional_signature(champion):
    model = mlflow.models.get_model_info(champion.info.model_uri)
    inputs = {c["name"]: c for c in model.signature.inputs.to_dict()}
    assert set(inputs) == {"dataset", "f0", "f1", "f2", "meta.m0", "meta.m1", "meta.m2", "meta.region"}
    assert not any(c.get("required", True) for c in inputs.values())
    local = Path(mlflow.artifacts.download_artifacts(champion.info.model_uri))
    assert (local / "code" / "hypernet_core" / "fleet.py").exists()
    reqs = (local / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in reqs} >= {"mlflow", "torch", "numpy", "pandas", "safetensors"}


# ---- input errors say which dataset, which field and the fix ---------------------------------------------
@pytest.fixture(scope="module")
def loaded(model_dir):
    return load_model(model_dir)


def test_misnamed_known_dataset_is_reported_with_a_suggestion(loaded, fleet):
    name = fleet[0][0].name
    with pytest.raises(FleetError) as err:
        tracking.predict_frame(*loaded, pd.DataFrame({"dataset": [name + "x"], "f0": [0.1]}))
    assert err.value.dataset == name + "x" and err.value.field == "dataset"
    assert f"did you mean {name!r}" in str(err.value) and "meta.m0" in str(err.value)


def test_row_without_name_or_meta_is_refused(loaded):
    with pytest.raises(FleetError, match="neither a dataset name nor meta-features"):
        tracking.predict_frame(*loaded, pd.DataFrame({"dataset": [None], "f0": [0.1]}))


def test_unknown_columns_are_refused(loaded):
    with pytest.raises(FleetError, match="not a meta-feature of this model"):
        tracking.predict_frame(*loaded, pd.DataFrame({"meta.altitude": [1.0], "f0": [0.1]}))
    with pytest.raises(FleetError, match="neither a canonical feature"):
        tracking.predict_frame(*loaded, pd.DataFrame({"F0": [0.1], "f1": [0.2]}))


def test_one_new_dataset_with_two_meta_descriptions_is_refused(loaded):
    frame = pd.DataFrame({"dataset": ["new", "new"], "f0": [0.1, 0.2], "meta.m0": [0.0, 1.0]})
    with pytest.raises(FleetError, match="different meta-feature values"):
        tracking.predict_frame(*loaded, frame)


def test_missing_columns_are_missing_features_and_one_row_is_enough(loaded, fleet):
    name = fleet[0][0].name
    got = tracking.predict_frame(*loaded, pd.DataFrame({"dataset": [name], "f1": [0.5]}, index=[7]))
    assert list(got.index) == [7] and np.isfinite(got.loc[7, "prediction"])
    empty = tracking.predict_frame(*loaded, pd.DataFrame({"dataset": [], "f0": []}))
    assert list(empty.columns) == ["prediction"] and len(empty) == 0


def test_classification_predicts_class_labels(fleet):
    tables = synthetic_fleet(4, rows=30, n_features=3, task="classification", seed=5)
    model, enc = train_tiny(tables, task="classification")
    frame = pd.DataFrame({"dataset": [tables[0].name] * 4 + [None] * 2,
                          **{f: np.r_[tables[0].features[f][:4], tables[1].features[f][:2]] for f in enc.features},
                          "meta.m0": [None] * 4 + [0.3] * 2, "meta.region": [None] * 4 + ["b"] * 2})
    got = tracking.predict_frame(model, enc, {"dataset_meta": {t.name: t.meta for t in tables}}, frame)
    assert set(got["prediction"]) <= set(enc.classes)
    direct = enc.transform([DatasetTable(tables[0].name, {f: v[:4] for f, v in tables[0].features.items()},
                                         tables[0].target[:4], tables[0].meta)])
    assert list(got["prediction"][:4]) == [enc.classes[i] for i in predict(model, direct).argmax(1).tolist()]
    assert tracking.serving_signature(enc).outputs.to_dict()[0]["type"] == "long"


# ---- what a run logs --------------------------------------------------------------------------------------
def run_artifact(run_id: str, path: str) -> str:
    return mlflow.artifacts.load_text(f"runs:/{run_id}/{path}")


def test_logging_helpers_in_one_run(settings, tmp_path):
    client = MlflowClient()
    per_model = {k: {f"school/{i:04d} (A&B)": 0.1 + i / 1000 for i in range(160)}
                 for k in ("hypernetwork", "pooled", "per_dataset", "task_conditioned")}
    per_model["pooled"]["school/0000 (A&B)"] = math.nan  # undefined scores are left out of the metrics
    report = {"metric": "r2", "models": {"hypernetwork": {"seen": 0.25, "unseen": 0.21, "params": {"total": 1234}},
                                         "pooled": {"seen": 0.2, "unseen": None, "params": {"total": 99}}},
              "references": {"ridge_pooled": {"seen": 0.16}}, "few_shot": {"0": {"metric": 0.2}, "5": {"metric": 0.22}},
              "verdict": {"worth_it": True}, "model_config": {"hidden": [64, 64]}}
    figure = tmp_path / "heatmap.png"
    figure.write_bytes(b"\x89PNG not really")
    frames = [pd.DataFrame({"x": [1.0, 2.0]}), pd.DataFrame({"x": [1.0, 3.0]})]
    records = [{"name": "school_a", "urn": "urn:li:dataset:(urn:li:dataPlatform:file,lake/a.csv,PROD)",
                "location": str(tmp_path / "a.csv"), "content_hash": tracking.content_hash(frames[0])},
               {"name": "school_b", "urn": "urn:li:dataset:(urn:li:dataPlatform:s3,bucket/b.parquet,PROD)",
                "location": "s3://bucket/b.parquet", "content_hash": tracking.content_hash(frames[1])}]
    secret = settings.model_copy(update={"catalog": settings.catalog.model_copy(update={"token": "s3cret"})})
    with mlflow.start_run() as run:
        tracking.log_settings(secret)
        start = time.perf_counter()
        table = tracking.log_per_dataset_metrics(per_model, split="seen")
        seconds = time.perf_counter() - start
        tracking.log_comparison(report)
        tracking.log_figures([figure])
        tracking.log_validation([{"name": "school_a", "ok": True, "reason": "passed all checks", "n_rows": 2},
                                 {"name": "school_c", "ok": False, "reason": "column x: 80% missing", "n_rows": 9}])
        tracking.log_datasets(records)
    print(f"{sum(len(v) for v in per_model.values())} per-dataset scores (CSV + metrics) logged in {seconds:.2f} s")
    got = client.get_run(run.info.run_id)
    params, metrics = got.data.params, got.data.metrics
    # settings: flat params, full JSON, never the token
    assert params["tracking.experiment"] == "tests" and params["retrain.max_dataset_regression"] == "0.05"
    assert "catalog.token" not in params and "s3cret" not in json.dumps(params)
    saved = json.loads(run_artifact(run.info.run_id, "settings.json"))
    assert saved["catalog"]["token"] == "<redacted>" and saved["tracking"]["model_name"] == MODEL_NAME
    # per-dataset: CSV with real names, sanitised metric names
    assert table.shape == (160, 4)
    csv = pd.read_csv(pd.io.common.StringIO(run_artifact(run.info.run_id, "per_dataset_seen.csv")), index_col=0)
    assert csv.loc["school/0007 (A&B)", "pooled"] == pytest.approx(0.107)
    per_dataset = [k for k in metrics if k.startswith("seen.")]
    assert len(per_dataset) == 639
    assert metrics["seen.hypernetwork.school_0007 _A_B_"] == pytest.approx(0.107)
    # comparison
    assert metrics["hypernetwork.seen"] == 0.25 and metrics["hypernetwork.unseen"] == 0.21
    assert "pooled.unseen" not in metrics and metrics["ridge_pooled.seen"] == 0.16
    assert metrics["hypernetwork.n_parameters"] == 1234 and metrics["verdict.worth_it"] == 1.0
    assert metrics["hypernetwork.unseen.5_shot"] == 0.22
    assert json.loads(run_artifact(run.info.run_id, "comparison.json"))["model_config"] == {"hidden": [64, 64]}
    # figures, validation, datasets
    assert [a.path for a in client.list_artifacts(run.info.run_id, "figures")] == ["figures/heatmap.png"]
    assert metrics["validation.n_valid"] == 1 and metrics["validation.n_quarantined"] == 1
    assert "80% missing" in run_artifact(run.info.run_id, "validation.csv")
    assert json.loads(run_artifact(run.info.run_id, "datasets.json"))["datasets"] == records
    inputs = {d.dataset.name: d for d in got.inputs.dataset_inputs}
    assert set(inputs) == {"school_a", "school_b"}
    assert inputs["school_b"].dataset.digest == records[1]["content_hash"][:32]
    assert {t.key: t.value for t in inputs["school_b"].tags}["urn"] == records[1]["urn"]


def test_log_onboarding_records_the_generated_weights(settings, champion, model_dir, fleet, tmp_path):
    model, enc, _ = load_model(model_dir)
    new = fleet[1][0]
    weights = tmp_path / f"{new.name}.safetensors"
    generate(model, enc, new.name, new.meta).save(weights)
    done = [SimpleNamespace(name=new.name, urn="urn:x", how="zero-shot", metrics={"zero_shot": 0.3},
                            location="s3://b/w", file=weights)]
    run_id = tracking.log_onboarding(settings, champion.version, done)
    run = MlflowClient().get_run(run_id)
    assert run.data.metrics[f"onboard.{new.name}.zero_shot"] == 0.3
    assert run.data.tags["hypernet.model_version"] == str(champion.version)
    assert run.data.tags["hypernet.model_id"] == champion.info.model_id
    assert [a.path for a in MlflowClient().list_artifacts(run_id, "weights")] == [f"weights/{new.name}.safetensors"]


def test_configure_creates_the_experiment_once_with_artifacts_beside_the_database(settings):
    first = tracking.configure(settings)
    assert tracking.configure(settings) == first
    location = MlflowClient().get_experiment(first).artifact_location
    assert location == (settings.workspace / "mlartifacts").resolve().as_uri()


def test_content_hash_is_stable_and_sensitive_to_content_order_and_types():
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]})
    h = tracking.content_hash(df)
    assert len(h) == 64 and h == tracking.content_hash(df.copy())
    assert tracking.content_hash(df.set_axis([10, 11, 12])) == h  # the index is not content
    assert tracking.content_hash(df.iloc[::-1]) != h
    assert tracking.content_hash(df.astype({"a": float})) != h
    assert tracking.content_hash(df.rename(columns={"a": "c"})) != h
    changed = df.copy()
    changed.loc[1, "a"] = 5
    assert tracking.content_hash(changed) != h


# ---- served for real ------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, payload: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (mlflow CLI + uvicorn), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations(champion, settings, model_dir, fleet, tmp_path):
    frame, _ = mixed_frame(*fleet)
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # uvicorn
    log = (tmp_path / "serve.log").open("w")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL_NAME}@champion",
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.perf_counter() - start < 120, "server not ready in 120 s"
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        print(f"mlflow models serve ready in {time.perf_counter() - start:.1f} s")
        split = json.loads(frame.to_json(orient="split", index=False))
        got = _post(f"{url}/invocations", {"dataframe_split": {"columns": split["columns"], "data": split["data"]}})
        want = tracking.predict_frame(*load_model(model_dir), frame)["prediction"].to_numpy()
        np.testing.assert_allclose([p["prediction"] for p in got["predictions"]], want, atol=1e-5)
        head = json.loads(frame.head(2).to_json(orient="records"))
        records = _post(f"{url}/invocations", {"dataframe_records": head})
        np.testing.assert_allclose([p["prediction"] for p in records["predictions"]], want[:2], atol=1e-5)
        with pytest.raises(urllib.error.HTTPError) as bad:
            _post(f"{url}/invocations", {"dataframe_records": [{"dataset": "nobody", "f0": 1.0}]})
        assert bad.value.code == 400 and "'nobody'" in bad.value.read().decode()
    finally:
        _stop(proc)
        log.close()
    assert proc.poll() is not None
