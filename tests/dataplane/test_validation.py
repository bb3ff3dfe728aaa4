"""Validation: every broken dataset quarantined for the right reason, healthy ones pass and train.

The corpus (a small healthy fleet + the whole broken corpus) is written once per backend, local
folder and SeaweedFS, and validated once per backend: in this process on the local lake, in
worker processes on S3 (so both execution paths are covered).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from flows.fleetgen import make_broken_corpus, make_fleet, write_datasets
from flows.metafeatures import model_meta
from flows.storage import Lake
from flows.validation import (COLUMN_SET, DISTINCT, NON_NULL, DatasetContract, FleetValidation,
                              NoValidDatasetError, build_data_docs, canonical_arrays, contracts_to_json,
                              load_contracts, validate_dataset, validate_fleet)

BACKENDS = ("local", "s3")  # as in conftest.py

N_HEALTHY = 8


@pytest.fixture(scope="session", params=BACKENDS)
def validated(request, tmp_path_factory):
    """(items, contracts, fleet result, lake) for the corpus on one backend."""
    items = make_fleet(N_HEALTHY, seed=3, max_rows=1500) + make_broken_corpus(seed=0)
    if request.param == "local":
        lake = Lake(tmp_path_factory.mktemp("lake"))
        contracts = write_datasets(items, lake.root)
        fleet = validate_fleet(contracts, lake, workers=1)
    else:
        server = request.getfixturevalue("s3_env")
        lake = Lake(f"s3://{server.bucket}/corpus", endpoint_url=server.endpoint_url, region="us-east-1")
        contracts = write_datasets(items, lake)
        fleet = validate_fleet(contracts, lake, workers=2)
    return items, contracts, fleet, lake


def test_every_broken_dataset_is_quarantined_for_the_right_reason(validated):
    items, _, fleet, _ = validated
    results = fleet.by_name()
    broken = [i for i in items if not i.healthy]
    assert len(broken) >= 20
    for item in broken:
        r = results[item.contract.name]
        found = [(f.check, f.column) for f in r.failures]
        assert not r.ok, item.defect
        assert (item.expect_check, item.expect_column) in found, f"{item.defect}: {r.reason}"
        assert item.expect_check in r.reason and r.failures[0].fix
        if item.expect_column:
            assert item.expect_column in r.reason


def test_healthy_datasets_are_exactly_the_valid_ones_with_stats(validated):
    items, _, fleet, _ = validated
    assert {r.name for r in fleet.valid} == {i.contract.name for i in items if i.healthy}
    for r in fleet.valid:
        assert r.reason == "passed all checks" and r.stats["n_rows"] == r.n_rows
        assert {"missing_share", "target_mean", "target_std", "age.mean", "age.std"} <= set(r.stats)
        assert 0 <= r.stats["missing_share"] < 0.1 and r.stats["target_std"] > 0


def test_worker_processes_match_this_process(validated):
    """Parallel validation (fork-server workers) gives the same verdicts as serial validation."""
    _, contracts, fleet, lake = validated
    subset = contracts[:N_HEALTHY // 2] + contracts[N_HEALTHY:N_HEALTHY + 6]
    other = validate_fleet(subset, lake, workers=1 if fleet.workers > 1 else 2)
    expected = fleet.by_name()
    for r in other.results:
        assert r.ok == expected[r.name].ok and r.failures == expected[r.name].failures


def test_a_fleet_with_no_valid_dataset_stops_with_a_clear_error(validated):
    _, _, fleet, _ = validated
    broken_only = FleetValidation(fleet.quarantined)
    with pytest.raises(NoValidDatasetError, match="no valid dataset in the fleet: all 23 were quarantined"):
        broken_only.require_valid()
    assert fleet.require_valid() is fleet


def test_results_are_kept_as_json(validated, tmp_path):
    _, _, fleet, _ = validated
    path = fleet.write_json(tmp_path / "run")
    summary = json.loads(path.read_text())
    assert summary["n_valid"] == N_HEALTHY and summary["n_quarantined"] == len(fleet.quarantined)
    row = next(d for d in summary["datasets"] if d["name"] == "broken_all_nan_column")
    assert row["failures"][0]["column"] == "bmi" and row["failures"][0]["rows"] == 120
    gx_files = list((tmp_path / "run" / "gx").glob("*.json"))
    assert len(gx_files) >= N_HEALTHY and "expectations" in json.loads(gx_files[0].read_text())


def test_healthy_datasets_become_canonical_arrays(validated):
    items, contracts, fleet, lake = validated
    valid = {r.name for r in fleet.valid}
    for c in contracts:
        if c.name in valid:
            arrays = canonical_arrays(c, lake.read_table(c.location))
            assert set(arrays.features) == set(c.features) and arrays.target.dtype == np.float64
            assert all(v.shape == arrays.target.shape for v in arrays.features.values())


def test_healthy_datasets_train(validated):
    """The survivors of validation feed hypernet_core and train (skipped if it is not there yet)."""
    core = pytest.importorskip("hypernet_core")
    if not hasattr(core, "fit"):
        pytest.skip("hypernet_core.fit is not available yet")
    _, contracts, fleet, lake = validated
    stats = {r.name: r.stats for r in fleet.valid}
    tables = []
    for c in contracts:
        if c.name in stats:
            a = canonical_arrays(c, lake.read_table(c.location))
            meta = model_meta({k: v for k, v in a.meta.items() if not isinstance(v, bool)}, stats[c.name])
            tables.append(core.DatasetTable(a.name, a.features, a.target, meta))
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: extra threads only contend on a 2-core machine
    try:
        enc = core.FleetEncoder.fit(tables, task="regression")
        model = core.build_model("hypernetwork", core.ModelConfig(), enc.n_features, enc.meta_dim, enc.out_dim,
                                 len(tables))
        result = core.fit(model, enc.transform(tables), core.TrainConfig(max_steps=30, eval_every=10, progress=False))
    finally:
        torch.set_num_threads(threads)
    assert result.steps > 0 and np.isfinite(result.best_val_loss)


# ---- contracts, suites and edge cases (no backend needed) ----------------------------------------

def _frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "label": rng.choice(["a", "b", "c"], n)})


def _contract(**kw) -> DatasetContract:
    base = dict(name="ds", location="ds.csv", target="label", task_type="classification",
                field_mapping={"x1": "f1", "x2": "f2"})
    return DatasetContract(**{**base, **kw})


def test_classification_targets():
    assert validate_dataset(_contract(), df=_frame()).ok
    single = validate_dataset(_contract(), df=_frame().assign(label="a"))
    assert [(f.check, f.column) for f in single.failures] == [(DISTINCT, "label")]
    continuous = validate_dataset(_contract(max_classes=10), df=_frame().assign(label=np.arange(60) / 7))
    assert "more than max_classes=10" in continuous.reason


def test_all_null_feature_fails_even_when_any_missing_share_is_allowed():
    df = _frame().assign(x2=np.nan)
    r = validate_dataset(_contract(max_missing_share=1.0), df=df)
    assert [(f.check, f.column, f.source_column) for f in r.failures] == [(NON_NULL, "f2", "x2")]
    assert "every value is missing" in r.reason and "source 'x2'" in r.reason


def test_required_feature_without_a_source_column():
    r = validate_dataset(_contract(required_features=("f1", "f2", "f3")), df=_frame())
    assert [(f.check, f.column) for f in r.failures] == [(COLUMN_SET, "f3")]


def test_contract_errors_name_the_dataset_and_the_fix():
    with pytest.raises(ValueError, match="dataset 'ds'.*canonical feature 'f1'.*fix the field mapping"):
        _contract(field_mapping={"x1": "f1", "x2": "f1"})
    with pytest.raises(ValueError, match="unknown field"):
        DatasetContract.from_dict({"name": "ds", "location": "x", "target": "y", "colour": "red"})


def test_contracts_round_trip_through_json_and_yaml(tmp_path):
    contracts = [_contract(ranges={"f1": (-5.0, 5.0)}, meta={"region": "north"})]
    (tmp_path / "contracts.json").write_text(contracts_to_json(contracts))
    loaded = load_contracts(tmp_path)
    assert loaded[0].ranges == {"f1": (-5.0, 5.0)} and loaded[0].location == str(tmp_path / "ds.csv")
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"datasets": [contracts[0].to_dict()]}))
    assert load_contracts(tmp_path / "c.yaml")[0].field_mapping == {"x1": "f1", "x2": "f2"}


def test_duplicate_dataset_names_are_refused():
    with pytest.raises(ValueError, match="'ds' appears more than once"):
        validate_fleet([_contract(), _contract()])


def test_model_meta_is_configurable():
    stats = {"n_rows": 10.0, "log_n_rows": 2.3, "target_mean": 1.0, "age.mean": 40.0}
    assert model_meta({"region": "n"}, stats, use=None) == {"region": "n"}
    assert model_meta({"region": "n"}, stats) == {"region": "n", "stat.log_n_rows": 2.3, "stat.target_mean": 1.0}
    assert len(model_meta({}, stats, use=("*",))) == 4


def test_great_expectations_is_imported_lazily():
    code = ("import sys, flows.validation, flows.storage, flows.fleetgen, flows.cli_validate, flows.metafeatures; "
            "print('great_expectations' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_data_docs_are_built_on_demand(tmp_path):
    items = make_fleet(2, seed=5, max_rows=200) + make_broken_corpus(seed=0)[:2]
    contracts = write_datasets(items, tmp_path / "data")
    index = build_data_docs(contracts, tmp_path / "gx")
    assert index.name == "index.html" and index.exists()
    pages = {p.name for p in (index.parent / "validations").iterdir()}
    assert {"hospital_000", "hospital_001", "broken_all_nan_column"} <= pages
