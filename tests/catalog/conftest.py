"""Fixtures for the catalog tests: a real DataHub Lite file per engine, and the GMS stand-in.

`catalog` is parametrised over the three ways the catalog can run -- Lite on SQLite, Lite on
DuckDB, and the server backend against the local stand-in -- so every behaviour test shows the
feature exists in each backend.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for gms_standin and catalog_testkit

from catalog_testkit import BACKENDS  # noqa: E402
from gms_standin import StandIn, running  # noqa: E402

from catalog import Catalog, open_catalog  # noqa: E402

@pytest.fixture(autouse=True)
def _quiet_datahub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAHUB_TELEMETRY_ENABLED", "false")


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    path = tmp_path / "lake"
    path.mkdir()
    return path


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with running() as state:
        yield state


@pytest.fixture(params=BACKENDS)
def catalog(request: pytest.FixtureRequest, tmp_path: Path, lake: Path) -> Iterator[Catalog]:
    if request.param == "server":
        with running() as state:
            with open_catalog(backend="server", server_url=state.url, token="t0ken", lake=str(lake)) as cat:
                yield cat
    else:
        engine = request.param
        with open_catalog(engine=engine, file=tmp_path / f"catalog.{engine}", lake=str(lake)) as cat:
            yield cat
