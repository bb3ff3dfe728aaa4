"""The `hypernet` command line on small data (the demo's own test is in test_demo.py)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from hypernet_core import FleetEncoder, evaluate
from hypernet_core.io import load_model
from hypernet_core.synthetic import synthetic_fleet

runner = CliRunner()


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERNET_WORKSPACE", str(tmp_path / "ws"))
    return tmp_path / "ws"


def long_table(n_datasets=8) -> pd.DataFrame:
    parts = []
    for t in synthetic_fleet(n_datasets, rows=(30, 60), n_features=3, seed=5):
        df = pd.DataFrame(t.features)
        df["hospital"], df["outcome"] = t.name, t.target
        for k, v in t.meta.items():
            df[k] = v
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def test_doctor_reports_versions_device_and_backends(workspace):
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    for word in ("torch", "device", "cpu", "catalog", "sqlite"):
        assert word in result.output


def test_train_on_a_users_table_saves_a_model_that_reloads(workspace, tmp_path):
    path = tmp_path / "fleet.csv"
    df = long_table()
    df.to_csv(path, index=False)
    result = runner.invoke(app, ["train", str(path), "--group", "hospital", "--target", "outcome",
                                 "-m", "m0", "-m", "m1", "-m", "m2", "-m", "region", "--steps", "60",
                                 "--name", "mine", "--no-baselines"])
    assert result.exit_code == 0, result.output
    report = json.loads((workspace / "reports" / "train-mine.json").read_text())
    assert set(report["models"]) == {"hypernetwork"} and report["models"]["hypernetwork"]["seen"] > 0.3

    model, enc, spec = load_model(workspace / "models" / "mine")
    assert spec["kind"] == "hypernetwork" and enc.features == ["f0", "f1", "f2"]
    from flows.tables import split_by_group

    tables = split_by_group(df, "hospital", "outcome", None, ["m0", "m1", "m2", "region"])
    assert evaluate(model, enc.transform(tables)).overall > 0.3


def test_train_names_the_bad_column(workspace, tmp_path):
    path = tmp_path / "fleet.csv"
    long_table().to_csv(path, index=False)
    result = runner.invoke(app, ["train", str(path), "--group", "hospital", "--target", "no_such_column"])
    assert result.exit_code != 0
    assert "no_such_column" in str(result.exception) or "no_such_column" in result.output


def test_saved_weights_are_plain_safetensors(workspace, tmp_path):
    from safetensors.torch import load_file

    from flows.tables import split_by_group
    from hypernet_core import ModelConfig, TrainConfig, build_model, fit
    from hypernet_core.io import save_model, state_equal

    tables = split_by_group(long_table(4), "hospital", "outcome", None, ["m0", "region"])
    enc = FleetEncoder.fit(tables)
    model = build_model("hypernetwork", ModelConfig(hidden=(8,)), enc.n_features, enc.meta_dim, 1, len(tables))
    fit(model, enc.transform(tables), TrainConfig(max_steps=5, progress=False))
    folder = save_model(tmp_path / "m", model, enc, ModelConfig(hidden=(8,)))
    assert all(isinstance(t, torch.Tensor) for t in load_file(folder / "model.safetensors").values())
    again, _, _ = load_model(folder)
    assert state_equal(model, again)


def test_generate_weights_for_a_new_dataset_zero_and_few_shot(workspace, tmp_path):
    from hypernet_core.export import GeneratedModel

    df = long_table(9)
    new = df[df.hospital == "ds0008"]
    path = tmp_path / "fleet.csv"
    df[df.hospital != "ds0008"].to_csv(path, index=False)
    result = runner.invoke(app, ["train", str(path), "--group", "hospital", "--target", "outcome", "-m", "m0",
                                 "-m", "m1", "-m", "m2", "-m", "region", "--steps", "40", "--no-baselines"])
    assert result.exit_code == 0, result.output
    meta = [f"{k}={new[k].iloc[0]}" for k in ("m0", "m1", "m2", "region")]
    args = ["generate", str(workspace / "models" / "model"), "--name", "ds0008"]
    for m in meta:
        args += ["--meta", m]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    zero = GeneratedModel.load(workspace / "weights" / "ds0008.safetensors")
    assert zero.spec["how"] == "zero-shot" and zero.spec["meta"]["region"] == new["region"].iloc[0]

    rows = tmp_path / "rows.csv"
    new[["f0", "f1", "f2", "outcome"]].head(10).to_csv(rows, index=False)
    result = runner.invoke(app, args + ["--rows", str(rows), "--target", "outcome", "--out", str(tmp_path / "few.safetensors")])
    assert result.exit_code == 0, result.output
    few = GeneratedModel.load(tmp_path / "few.safetensors")
    assert "10 rows" in few.spec["how"]
    pred = few.predict(new[["f0", "f1", "f2"]].to_numpy())
    assert pred.shape == (len(new),) and np.isfinite(pred).all()


def test_transfer_fills_r_and_reports_gem_metrics(workspace, tmp_path):
    path = tmp_path / "fleet.csv"
    long_table(8).to_csv(path, index=False)
    result = runner.invoke(app, ["transfer", str(path), "--group", "hospital", "--target", "outcome", "-m", "m0",
                                 "-m", "region", "--stages", "2", "--steps", "20"])
    assert result.exit_code == 0, result.output
    report = json.loads((workspace / "reports" / "transfer-hypernetwork.json").read_text())
    assert len(report["R"]) == 2 and len(report["R"][0]) == 2
    assert report["BWT"] == pytest.approx(report["R"][1][0] - report["R"][0][0])
    assert "ACC" in result.output and "BWT" in result.output


def test_compare_versions_on_shared_datasets(workspace, tmp_path):
    path = tmp_path / "fleet.csv"
    long_table(6).to_csv(path, index=False)
    base = ["train", str(path), "--group", "hospital", "--target", "outcome", "-m", "m0", "--no-baselines"]
    assert runner.invoke(app, base + ["--steps", "40", "--name", "v1"]).exit_code == 0
    assert runner.invoke(app, base + ["--steps", "5", "--name", "v2"]).exit_code == 0
    result = runner.invoke(app, ["compare", str(workspace / "models" / "v2"), str(workspace / "models" / "v1"),
                                 str(path), "--group", "hospital", "--target", "outcome", "-m", "m0"])
    assert result.exit_code == 0, result.output
    assert "6 datasets both versions know" in result.output
