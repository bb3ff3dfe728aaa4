"""The catalog: every conversation with DataHub.

    from catalog import open_catalog, fields_from_dtypes
    with open_catalog(file="ws/catalog/datahub-lite.sqlite", lake="ws/lake") as cat:
        cat.register_dataset("ws/lake/hsb/1224.parquet", fields_from_dtypes(df.dtypes.items()),
                             target="MathAch", task_type="regression", meta={"Sector": "Public", "Size": 842})
        fleet = cat.list_fleet()

Backends, chosen by settings only: DataHub Lite on a local SQLite/DuckDB file (default) or a
DataHub server (GMS) through DataHub's REST client. Both behave the same (see `catalog.store`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# DataHub's client reports usage unless told not to; respect an explicit choice by the user.
os.environ.setdefault("DATAHUB_TELEMETRY_ENABLED", "false")

from catalog.catalog import Catalog  # noqa: E402
from catalog.errors import CatalogError  # noqa: E402
from catalog.records import (  # noqa: E402
    TASK_TYPES,
    DatasetRecord,
    Field,
    ModelRecord,
    Onboarding,
    Scalar,
    Validation,
)
from catalog.schema import fields_from_dtypes  # noqa: E402

BACKENDS = ("lite", "server")

__all__ = [
    "BACKENDS",
    "TASK_TYPES",
    "Catalog",
    "CatalogError",
    "DatasetRecord",
    "Field",
    "ModelRecord",
    "Onboarding",
    "Scalar",
    "Validation",
    "fields_from_dtypes",
    "open_catalog",
    "open_catalog_from_settings",
]


def open_catalog(
    backend: str = "lite",
    engine: str = "sqlite",
    file: str | Path | None = None,
    server_url: str = "http://localhost:8080",
    token: str | None = None,
    fleet_tag: str = "hypernet",
    lake: str | None = None,
    *,
    lock_timeout_s: float = 5.0,
    timeout_s: float = 10.0,
    retries: int = 2,
) -> Catalog:
    """Open the catalog. `lake`, when given, is where every registered dataset must live.

    Lite: `file` (default `.hypernet/catalog/datahub-lite.<engine>`) is created on first use.
    Server: `server_url` is GMS (not the frontend); `token` a DataHub access token.
    """
    if backend == "lite":
        from catalog.lite_store import LiteStore

        path = Path(file) if file is not None else Path(".hypernet") / "catalog" / f"datahub-lite.{engine}"
        store: Any = LiteStore(path, engine, lock_timeout_s=lock_timeout_s)
    elif backend == "server":
        from catalog.server_store import ServerStore

        store = ServerStore(server_url, token, timeout_s=timeout_s, retries=retries)
    else:
        raise CatalogError(f"catalog backend {backend!r} is not one of {BACKENDS}; set catalog.backend")
    try:
        return Catalog(store, fleet_tag=fleet_tag, lake=lake)
    except CatalogError:
        store.close()
        raise


def open_catalog_from_settings(settings: Any, **overrides: Any) -> Catalog:
    """Open the catalog the way `flows.settings.Settings` describes (duck-typed: catalog doesn't import flows)."""
    cat = settings.catalog
    kwargs: dict[str, Any] = dict(
        backend=cat.backend,
        engine=cat.engine,
        file=settings.catalog_file,
        server_url=cat.server_url,
        token=cat.token,
        fleet_tag=cat.fleet_tag,
        lake=settings.lake,
    )
    kwargs.update(overrides)
    return open_catalog(**kwargs)
