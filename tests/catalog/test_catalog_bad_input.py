"""Bad input: each a clear error naming the dataset and the fix, and nothing already registered is lost."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from catalog_testkit import FIELDS, LITE_ENGINES, register

from catalog import Catalog, CatalogError, open_catalog

BAD_REGISTRATIONS = [
    ({"target": "MathScore"}, r"dataset 'new': target column 'MathScore' is not among its columns \['SES'"),
    ({"meta": {"altitude": [512, 600]}}, r"dataset 'new': meta-feature 'altitude' must be a single str, int, float or bool"),
    ({"meta": {"altitude": None}}, r"meta-feature 'altitude' must be a single"),
    ({"meta": {"altitude": float("nan")}}, r"meta-feature 'altitude' is nan.*leave the key out"),
    ({"meta": {"bad key": 1}}, r"meta-feature name 'bad key' is not usable"),
    ({"task_type": "ranking"}, r"dataset 'new': task type 'ranking' is not one of"),
    ({"field_mapping": {"ses": "ses"}}, r"field mapping names column 'ses', which is not among"),
    ({"field_mapping": {"SES": "ses", "Sex": "ses"}}, r"several columns map to the canonical feature\(s\) \['ses'\]"),
    ({"fields": [("a", "int64"), ("a", "float64")], "target": "a"}, r"duplicate columns \['a'\]"),
    ({"fields": []}, r"has no columns"),
]


def test_bad_registrations_are_refused_and_nothing_is_lost(catalog: Catalog, lake) -> None:
    kept = register(catalog, lake, "kept")
    for overrides, message in BAD_REGISTRATIONS:  # one catalog for all cases: DuckDB commits are slow
        with pytest.raises(CatalogError, match=message):
            register(catalog, lake, "new", **overrides)
    assert catalog.list_fleet() == [kept]


BAD_LOCATIONS = [
    ("{lake}/hsb/school,1224.parquet", r"',' is reserved in URNs; rename the file"),
    ("{lake}/hsb/school (1).parquet", r"is reserved in URNs"),
    ("{tmp}/elsewhere/a.parquet", r"dataset 'a' at .*elsewhere/a.parquet is outside the data lake .*lake"),
]


def test_bad_locations_are_refused(catalog: Catalog, lake, tmp_path) -> None:
    kept = register(catalog, lake, "kept")
    for location, message in BAD_LOCATIONS:
        with pytest.raises(CatalogError, match=message):
            catalog.register_dataset(location.format(lake=lake, tmp=tmp_path), FIELDS, "MathAch", "regression", {})
    assert catalog.list_fleet() == [kept]


# ---- the catalog file: corrupt, of the other engine, locked -------------------------------------
@pytest.mark.parametrize("engine", LITE_ENGINES)
def test_a_corrupt_catalog_file_is_reported_and_left_untouched(tmp_path: Path, engine: str) -> None:
    file = tmp_path / f"catalog.{engine}"
    file.write_bytes(b"not a database " * 100)
    with pytest.raises(CatalogError, match=rf"catalog file {file} is not a readable DataHub Lite {engine}.*untouched"):
        open_catalog(engine=engine, file=file)
    assert file.read_bytes() == b"not a database " * 100


@pytest.mark.parametrize(("written", "opened"), [("sqlite", "duckdb"), ("duckdb", "sqlite")])
def test_a_file_of_the_other_engine_names_the_setting_to_change(tmp_path: Path, lake, written: str, opened: str) -> None:
    file = tmp_path / "catalog.db"
    with open_catalog(engine=written, file=file, lake=str(lake)) as cat:
        kept = register(cat, lake, "kept")
    with pytest.raises(CatalogError, match=rf"is a DataHub Lite {written} file.*HYPERNET_CATALOG__ENGINE={written}"):
        open_catalog(engine=opened, file=file)
    with open_catalog(engine=written, file=file, lake=str(lake)) as cat:
        assert cat.list_fleet() == [kept]


def test_a_locked_sqlite_catalog_names_the_dataset_and_keeps_what_was_there(tmp_path: Path, lake) -> None:
    file = tmp_path / "catalog.sqlite"
    with open_catalog(file=file, lake=str(lake), lock_timeout_s=0.1) as cat:
        kept = register(cat, lake, "kept")
        other = sqlite3.connect(file)
        other.execute("BEGIN EXCLUSIVE")  # another process writing
        with pytest.raises(CatalogError, match=r"dataset 'new': the catalog file .* is locked by another process"):
            register(cat, lake, "new")
        reader = open_catalog(file=file, lock_timeout_s=0.1)  # WAL: readers are not blocked by a writer
        assert reader.list_fleet() == [kept]
        with pytest.raises(CatalogError, match=r"dataset 'kept': .*locked.*Nothing was written"):
            reader.set_validation(kept.urn, True, "ok")
        other.rollback()
        other.close()
        reader.close()
        assert cat.list_fleet() == [kept]
        register(cat, lake, "new")  # works again once the lock is gone
        assert [r.name for r in cat.list_fleet()] == ["kept", "new"]


def test_a_duckdb_catalog_held_by_another_process_is_reported(tmp_path: Path, lake) -> None:
    file = tmp_path / "catalog.duckdb"
    with open_catalog(engine="duckdb", file=file, lake=str(lake)) as cat:
        kept = register(cat, lake, "kept")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(file)!r}); print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CatalogError, match=r"is locked by another process.*one process at a time"):
            open_catalog(engine="duckdb", file=file)
    finally:
        holder.kill()
        holder.wait()
    with open_catalog(engine="duckdb", file=file, lake=str(lake)) as cat:
        assert cat.list_fleet() == [kept]


# ---- the server ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_says_where_and_what_to_check() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(CatalogError, match=rf"DataHub server at {url} could not be used.*HYPERNET_CATALOG__SERVER_URL.*BACKEND=lite"):
        open_catalog(backend="server", server_url=url, retries=0, timeout_s=2)


def test_a_server_refusing_writes_names_the_dataset_and_keeps_the_rest(standin, lake) -> None:
    with open_catalog(backend="server", server_url=standin.url, lake=str(lake), retries=0) as cat:
        kept = register(cat, lake, "kept")
        standin.fail_writes = True
        with pytest.raises(CatalogError, match=r"dataset 'new': the DataHub server at .* could not be used"):
            register(cat, lake, "new")
        standin.fail_writes = False
        assert cat.list_fleet() == [kept]


def test_unknown_backend_or_engine_or_tag(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="backend 'mysql' is not one of"):
        open_catalog(backend="mysql")
    with pytest.raises(CatalogError, match="engine 'postgres' is not one of"):
        open_catalog(engine="postgres", file=tmp_path / "x")
    with pytest.raises(CatalogError, match="fleet tag 'my fleet' is not usable.*catalog.fleet_tag"):
        open_catalog(file=tmp_path / "c.sqlite", fleet_tag="my fleet")
