"""`hypernet catalog import / register / list / show`, run in-process against a temporary workspace."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from catalog import open_catalog

cli = pytest.importorskip("flows.cli_catalog")
runner = CliRunner()


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYPERNET_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("HYPERNET_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("COLUMNS", "200")  # wide Rich tables: no folded names in assertions
    return tmp_path / "ws"


def _long_table(path: Path, **columns: list) -> Path:
    base = {
        "School": ["1224", "1224", "1288", "1288", "2305"],
        "SES": [-1.5, 0.2, 0.9, -0.3, 0.1],
        "Sector": ["Public", "Public", "Public", "Public", "Catholic"],
        "Size": [842, 842, 1855, 1855, 485],
        "MathAch": [5.9, 19.7, 12.1, 8.4, 21.0],
    }
    frame = pd.DataFrame({**base, **columns})
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def _fleet(workspace: Path):
    with open_catalog(file=workspace / "catalog" / "datahub-lite.sqlite") as cat:
        return cat.list_fleet()


def test_import_splits_a_long_table_into_registered_lake_datasets(workspace: Path, tmp_path: Path) -> None:
    table = _long_table(tmp_path / "hsb.csv")
    result = runner.invoke(cli.app, ["import", str(table), "--group", "School", "--target", "MathAch",
                                     "--meta", "Sector,Size", "--map", "SES=ses"])
    assert result.exit_code == 0, result.output
    assert "Imported 3 datasets" in result.output
    fleet = _fleet(workspace)
    assert [r.name for r in fleet] == ["hsb-1224", "hsb-1288", "hsb-2305"]
    first = fleet[0]
    assert first.location == str((workspace / "lake" / "hsb" / "hsb-1224.parquet").resolve())
    assert [f.name for f in first.fields] == ["SES", "MathAch"]
    assert first.meta == {"Sector": "Public", "Size": 842}
    assert first.field_mapping == {"SES": "ses"}
    assert pd.read_parquet(first.location)["MathAch"].tolist() == [5.9, 19.7]

    again = runner.invoke(cli.app, ["import", str(table), "--group", "School", "--target", "MathAch", "--meta", "Sector", "--meta", "Size"])
    assert again.exit_code == 0, again.output
    assert [(r.name, r.registered_at) for r in _fleet(workspace)] == [(r.name, r.registered_at) for r in fleet]


def test_import_refuses_a_meta_feature_that_varies_within_a_source_and_writes_nothing(workspace: Path, tmp_path: Path) -> None:
    table = _long_table(tmp_path / "hsb.parquet", Size=[842, 900, 1855, 1855, 485])
    result = runner.invoke(cli.app, ["import", str(table), "--group", "School", "--target", "MathAch", "--meta", "Size"])
    assert result.exit_code == 1
    assert "dataset 'hsb-1224': meta-feature column 'Size' takes 2 values" in result.output
    assert not (workspace / "lake").exists() and not (workspace / "catalog").exists()


def test_import_names_a_missing_column(workspace: Path, tmp_path: Path) -> None:
    table = _long_table(tmp_path / "hsb.csv")
    result = runner.invoke(cli.app, ["import", str(table), "--group", "School", "--target", "Score"])
    assert result.exit_code == 1
    assert "--target column 'Score' is not among its columns" in result.output


def test_register_list_and_show(workspace: Path, tmp_path: Path) -> None:
    lake_file = workspace / "lake" / "extra" / "siberia.parquet"
    lake_file.parent.mkdir(parents=True)
    pd.DataFrame({"temp": [1.0, 2.0], "yield": [3.0, 4.0]}).to_parquet(lake_file)
    result = runner.invoke(cli.app, ["register", str(lake_file), "--target", "yield", "--meta", "region=siberia",
                                     "--meta", "altitude_m=512", "--map", "temp=temperature"])
    assert result.exit_code == 0, result.output
    (record,) = _fleet(workspace)
    assert record.meta == {"region": "siberia", "altitude_m": 512}

    listed = runner.invoke(cli.app, ["list"])
    assert listed.exit_code == 0, listed.output
    assert "Fleet 'hypernet': 1 datasets" in listed.output and "siberia" in listed.output
    assert "altitude_m=512" in listed.output

    shown = runner.invoke(cli.app, ["show", "siberia"])
    assert shown.exit_code == 0, shown.output
    assert "temperature" in shown.output and "(target)" in shown.output and record.urn in shown.output


def test_register_refuses_a_file_outside_the_lake(workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.parquet"
    pd.DataFrame({"x": [1.0], "y": [2.0]}).to_parquet(outside)
    result = runner.invoke(cli.app, ["register", str(outside), "--target", "y"])
    assert result.exit_code == 1
    assert "is outside the data lake" in result.output and "hypernet catalog import" in result.output


def test_show_an_unknown_dataset(workspace: Path) -> None:
    result = runner.invoke(cli.app, ["show", "nope"])
    assert result.exit_code == 1
    assert "no fleet dataset is named 'nope'" in result.output
