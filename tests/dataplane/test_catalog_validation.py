"""Validation of the catalog's fleet: verdicts and statistics go back to DataHub, failures are quarantined."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.fleet_io import import_frame, list_fleet, load_fleet, validate_catalog_fleet
from flows.settings import Settings


@pytest.fixture
def settings(tmp_path, monkeypatch):
    from flows.settings import get_settings

    monkeypatch.setenv("HYPERNET_WORKSPACE", str(tmp_path / "ws"))
    get_settings.cache_clear()  # `hypernet validate` reads the cached settings
    yield Settings()
    get_settings.cache_clear()


def long_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    parts = []
    for i, beds in enumerate([100, 200, 300, 400]):
        n = 40
        df = pd.DataFrame({"site": f"h{i}", "age": rng.normal(50, 10, n), "bmi": rng.normal(25, 4, n),
                           "beds": beds})
        df["los"] = 0.1 * df["age"] + rng.normal(size=n)
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    df.loc[df.site == "h3", "bmi"] = np.nan  # one hospital never records BMI: an all-null feature
    return df


def test_failures_are_quarantined_in_the_catalog_and_kept_out_of_training(settings):
    import_frame(settings, long_table(), "site", "los", ["beds"], prefix="hosp")
    fleet = validate_catalog_fleet(settings)
    assert [r.name for r in fleet.quarantined] == ["hosp-h3"]
    assert "bmi" in fleet.quarantined[0].reason

    records = {r.name: r for r in list_fleet(settings)}
    assert records["hosp-h3"].validation.ok is False and "bmi" in records["hosp-h3"].validation.reason
    assert records["hosp-h0"].validation.ok is True and records["hosp-h0"].stats["n_rows"] == 40
    assert [t.name for t in load_fleet(settings, list(records.values()))] == ["hosp-h0", "hosp-h1", "hosp-h2"]


def test_stats_become_meta_features_when_configured(settings, monkeypatch):
    import_frame(settings, long_table(), "site", "los", ["beds"], prefix="hosp")
    validate_catalog_fleet(settings)
    monkeypatch.setenv("HYPERNET_VALIDATION__STATS_AS_META", '["missing_share", "n_rows"]')
    tables = load_fleet(Settings(), list_fleet(settings))
    assert tables[0].meta["stat.n_rows"] == 40 and "stat.missing_share" in tables[0].meta
    assert tables[0].meta["beds"] == 100


def test_validate_command_defaults_to_the_catalog_fleet(settings):
    import_frame(settings, long_table(), "site", "los", ["beds"], prefix="hosp")
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert "hosp-h3" in result.output and "written to the catalog" in result.output
