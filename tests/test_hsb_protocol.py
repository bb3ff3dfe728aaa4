"""`hypernet protocol`: the full HSB study on real data (via the catalog), one seed per model to stay short. Fixed seeds."""

import json

import pytest
from rich.console import Console

from flows.hsb_protocol import run_hsb_protocol
from flows.fleet_io import list_fleet
from flows.settings import Settings


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    settings = Settings(workspace=tmp_path_factory.mktemp("ws"))
    report = run_hsb_protocol(settings, Console(record=True, width=120), folds=3, progress=False, members=1)
    return settings, report


@pytest.mark.slow
def test_protocol_reads_the_fleet_from_the_catalog(demo):
    settings, report = demo
    names = [r.name for r in list_fleet(settings)]
    assert len(names) == 160 and all(n.startswith("hsb-") for n in names)
    assert report["n_datasets"] == 160 and report["n_rows"] == 7185


@pytest.mark.slow
def test_protocol_quality_on_seen_and_unseen_schools(demo):
    _, report = demo
    m, refs = report["models"], report["references"]
    hyper = m["hypernetwork"]
    assert hyper["seen"] > m["pooled"]["seen"] + 0.02          # specialisation pays on seen schools
    assert hyper["seen"] > m["per_dataset"]["seen"] + 0.03     # and sharing pays over isolation
    assert hyper["unseen"] > m["pooled"]["unseen"] + 0.02      # meta-features transfer to new schools
    assert hyper["seen"] > refs["ridge_pooled"]["seen"]
    assert hyper["params"]["total"] < m["per_dataset"]["params"]["total"] / 10
    curve = report["few_shot"]
    assert curve["20"]["metric"] > curve["0"]["metric"]        # labelled rows help ...
    assert curve["5"]["metric"] > curve["0"]["metric"] - 0.01  # ... and a few never hurt beyond noise


@pytest.mark.slow
def test_protocol_writes_report_interference_and_figures(demo):
    settings, report = demo
    saved = json.loads((settings.reports_dir / "hsb-protocol.json").read_text())
    assert saved["models"]["hypernetwork"]["seen"] == pytest.approx(report["models"]["hypernetwork"]["seen"])
    matrix = json.loads((settings.reports_dir / "interference.json").read_text())["matrix"]
    assert len(matrix) == 160 and all(len(row) == 160 for row in matrix)
    header = (settings.reports_dir / "hsb-protocol-per-dataset.csv").read_text().splitlines()
    assert header[0] == "dataset,hypernetwork,pooled,per_dataset,task_conditioned" and len(header) == 161
    for png in ("interference.png", "gains_over_pooled.png"):
        assert (settings.reports_dir / png).stat().st_size > 10_000
