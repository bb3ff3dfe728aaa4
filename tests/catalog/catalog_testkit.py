"""Shared test data and helpers for the catalog tests (a module, so tests can import it)."""

from __future__ import annotations

from pathlib import Path

from catalog import Catalog, DatasetRecord

BACKENDS = ["sqlite", "duckdb", "server"]  # Lite on each engine, and the server backend on the stand-in
LITE_ENGINES = ["sqlite", "duckdb"]

FIELDS = [("SES", "float64"), ("Minority", "category"), ("Sex", "object"), ("MathAch", "float64")]
META = {"Sector": "Public", "Size": 842, "MEANSES": -0.43, "urban": True}


def register(cat: Catalog, lake: Path, name: str, **overrides: object) -> DatasetRecord:
    """Register `<lake>/hsb/<name>.parquet` with the HSB-like defaults above, overridable per test."""
    kwargs: dict = dict(fields=FIELDS, target="MathAch", task_type="regression", meta=META)
    kwargs.update(overrides)
    return cat.register_dataset(lake / "hsb" / f"{name}.parquet", **kwargs)
