"""Fleet in and out of the catalog: one long table -> lake files + DataHub entries -> DatasetTables.

The catalog (DataHub) says which datasets form the fleet, where they live and what they mean; the
lake holds their rows. Training never reads a file the catalog does not list.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from catalog import CatalogError, DatasetRecord, fields_from_dtypes, open_catalog_from_settings
from flows.metafeatures import model_meta
from flows.settings import Settings
from flows.storage import Lake
from flows.validation import FleetValidation, contract_from_record, validate_fleet
from hypernet_core import DatasetTable

_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def slug(value: object) -> str:
    """A source value as a lake key and dataset-name part: URN-safe characters only."""
    return _SLUG.sub("_", str(value)).strip("._-") or "_"


def _constant_meta(part: pd.DataFrame, source: str, meta_cols: list[str]) -> dict[str, object]:
    """Meta-features describe a whole source, so each must take one value within it (or none: missing)."""
    meta: dict[str, object] = {}
    for col in meta_cols:
        values = part[col].dropna().unique()
        if len(values) > 1:
            shown = ", ".join(map(str, values[:5]))
            raise CatalogError(
                f"dataset {source!r}: meta-feature column {col!r} takes {len(values)} values within the source "
                f"({shown}); a meta-feature must be constant per source: pass it as a data column instead "
                "(leave it out of --meta)")
        if len(values) == 1:
            v = values[0]
            meta[col] = v.item() if isinstance(v, np.generic) else v
    return meta


def split_sources(df: pd.DataFrame, group: str, meta_cols: list[str], prefix: str
                  ) -> list[tuple[str, pd.DataFrame, dict[str, object]]]:
    """One (dataset name, rows, meta-features) per source, all checked before anything is written."""
    parts, names = [], {}
    for value, part in df.groupby(group, sort=True, dropna=True):
        name = f"{prefix}-{slug(value)}"
        if name in names:
            raise CatalogError(f"sources {names[name]!r} and {value!r} both become dataset {name!r}; "
                               "rename one of them in the source column")
        names[name] = value
        meta = _constant_meta(part, name, meta_cols)
        parts.append((name, part.drop(columns=[group, *meta_cols]).reset_index(drop=True), meta))
    return parts


def import_frame(settings: Settings, df: pd.DataFrame, group: str, target: str, meta_cols: list[str],
                 prefix: str, task_type: str = "regression", field_mapping: dict[str, str] | None = None,
                 overwrite: bool = False) -> list[DatasetRecord]:
    """Write each source's rows to the lake and register it in the catalog (re-importing updates)."""
    lake = Lake.from_settings(settings)
    parts = split_sources(df, group, meta_cols, slug(prefix))  # everything checked: now write
    records = []
    with open_catalog_from_settings(settings) as cat:
        for name, data, meta in parts:
            uri = lake.write_table(data, f"{slug(prefix)}/{name}.parquet", overwrite=overwrite)
            records.append(cat.register_dataset(uri, fields_from_dtypes(data.dtypes.items()), target, task_type,
                                                meta, field_mapping or {}, name=name))
    return records


def list_fleet(settings: Settings) -> list[DatasetRecord]:
    with open_catalog_from_settings(settings) as cat:
        return cat.list_fleet()


def table_from_record(record: DatasetRecord, df: pd.DataFrame, stats_as_meta: tuple[str, ...] = ()) -> DatasetTable:
    """A catalog entry and its rows -> a DatasetTable keyed by canonical feature names."""
    if record.target not in df.columns:
        raise CatalogError(f"dataset {record.name!r}: target column {record.target!r} is not in {record.location}; "
                           "fix the file or re-register it with the right --target")
    features = {}
    for column, canonical in record.field_mapping.items():
        if column in df.columns and column != record.target:
            features[canonical] = pd.to_numeric(df[column], errors="raise").to_numpy(np.float64, na_value=np.nan)
    target = df[record.target].to_numpy()
    if record.task_type == "regression":
        target = target.astype(np.float64)
    meta = model_meta(record.meta, record.stats, use=stats_as_meta) if stats_as_meta else dict(record.meta)
    return DatasetTable(record.name, features, target, meta)


def trainable(records: list[DatasetRecord]) -> list[DatasetRecord]:
    """Quarantined datasets (validation failed in the catalog) never reach training."""
    return [r for r in records if r.validation is None or r.validation.ok]


def load_fleet(settings: Settings, records: list[DatasetRecord]) -> list[DatasetTable]:
    lake = Lake.from_settings(settings)
    use = tuple(settings.validation.stats_as_meta)
    return [table_from_record(r, lake.read_table(r.location), use) for r in trainable(records)]


def validate_catalog_fleet(settings: Settings, records: list[DatasetRecord] | None = None,
                           results_dir: Path | None = None) -> FleetValidation:
    """Validate the catalog's fleet with Great Expectations and write each verdict, its reason and
    the computed statistics back to the catalog; failed datasets are quarantined from then on."""
    records = records if records is not None else list_fleet(settings)
    v = settings.validation
    contracts = [contract_from_record(r, min_rows=v.min_rows, max_missing_share=v.max_missing_share) for r in records]
    fleet = validate_fleet(contracts, Lake.from_settings(settings), workers=v.workers, results_dir=results_dir)
    with open_catalog_from_settings(settings) as cat:
        for status in fleet.catalog_status():
            cat.set_validation(status["urn"], status["ok"], status["reason"], status["stats"])
    return fleet


def keep_valid(settings: Settings, records: list[DatasetRecord], results_dir: Path | None = None
               ) -> tuple[list[DatasetRecord], FleetValidation]:
    """Validate `records` (verdicts written to the catalog) and keep the ones that passed."""
    result = validate_catalog_fleet(settings, records, results_dir)
    ok = {r.name for r in result.valid}
    return [r for r in records if r.name in ok], result


def read_local_table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
