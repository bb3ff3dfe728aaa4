"""Validate fleet datasets with Great Expectations 1.x and quarantine the ones that fail.

Input is a `DatasetContract` per dataset (what the catalog says about it); output is a
`DatasetValidation` per dataset: ok or quarantined, the failures (which check, which column, how
many rows, how to fix it) and, for valid datasets, statistical meta-features. A fleet is validated
in parallel processes when it is large enough for that to pay (`validate_fleet`).

A dataset goes through two stages:

1. loading (`load_table`): the file must exist, be non-empty, be readable as its format, have a
   UTF-8 header, the declared delimiter and unique column names. These are checked on the raw
   bytes because pandas silently repairs some of them (it renames duplicate columns, for one).
2. the expectation suite (`build_suite`), run by GE on the table renamed to canonical features:
   exact column set, row count, numeric types, missing share, value ranges (or finiteness), and a
   target that is present, complete, of the right kind and not constant.

Great Expectations takes seconds to import, so it is imported on first use only (`_gx`), once
per process; worker processes get it preloaded from a fork server.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from flows.metafeatures import compute_stats

if TYPE_CHECKING:
    from flows.storage import Lake

TaskType = Literal["regression", "classification"]

FINITE = 1.7976931348623157e308  # largest float64: "between -FINITE and FINITE" means finite

# GE expectation types, named once (they are what a quarantine reason cites).
ROW_COUNT = "expect_table_row_count_to_be_between"
COLUMN_SET = "expect_table_columns_to_match_set"
NUMERIC = "expect_columns_to_be_numeric"  # ours: see _columns_numeric_expectation
NON_NULL = "expect_column_proportion_of_non_null_values_to_be_between"
RANGE = "expect_column_quantile_values_to_be_between"  # quantiles 0 and 1: min and max
DISTINCT = "expect_column_unique_value_count_to_be_between"
# Checks made while loading, before GE sees a DataFrame.
FILE_READABLE, FILE_NOT_EMPTY, HEADER_UTF8 = "file_readable", "file_not_empty", "header_utf8"
CSV_DELIMITER, UNIQUE_COLUMNS = "csv_delimiter", "column_names_unique"

FIXES = {
    FILE_READABLE: "check the location in the catalog and that the file is a complete, valid file of its format",
    FILE_NOT_EMPTY: "re-export the dataset; the file has no bytes",
    HEADER_UTF8: "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
    CSV_DELIMITER: "write the file with the delimiter the contract declares, or declare the file's delimiter",
    UNIQUE_COLUMNS: "rename or drop the duplicated column so every column name is unique",
    ROW_COUNT: "add rows, or lower min_rows for this dataset",
    COLUMN_SET: "make the file's columns match the catalog schema and field mapping (add, rename or declare the column)",
    NUMERIC: "convert the column to numbers (fix or blank the non-numeric values), or declare it categorical",
    NON_NULL: "fill or drop the missing values, or raise max_missing_share for this dataset",
    RANGE: "correct the out-of-range values (infinite values included), or widen the declared range",
    DISTINCT: "a target needs at least two distinct values (classification: at most max_classes labels)",
}


# ---------------------------------------------------------------------------------------------
# Contract and results
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetContract:
    """What validation needs to know about one dataset, as the catalog declares it.

    The lead builds it from a catalog `DatasetRecord` (`contract_from_record`). Names:
    `field_mapping` maps a source column to its canonical feature; `ranges`, `categorical` and
    `required_features` use canonical names, except that the target keeps its own column name.
    `columns` is the declared schema (source names); by default the mapped columns plus the target.
    """

    name: str
    location: str
    target: str
    task_type: TaskType = "regression"
    field_mapping: Mapping[str, str] = field(default_factory=dict)
    columns: tuple[str, ...] | None = None
    required_features: tuple[str, ...] | None = None
    ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    categorical: tuple[str, ...] = ()
    min_rows: int = 20
    max_missing_share: float = 0.5
    max_classes: int = 50
    delimiter: str = ","
    urn: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        canon = list(self.field_mapping.values())
        dup = sorted({c for c in canon if canon.count(c) > 1})
        if dup:
            raise ValueError(f"dataset {self.name!r}: several columns map to canonical feature {dup[0]!r}; "
                             "fix the field mapping so each canonical feature has one source column")
        if self.target in self.field_mapping:
            raise ValueError(f"dataset {self.name!r}: target {self.target!r} is also mapped as a feature; "
                             "remove it from the field mapping")
        if self.task_type not in ("regression", "classification"):
            raise ValueError(f"dataset {self.name!r}: task_type {self.task_type!r} must be 'regression' or 'classification'")

    @property
    def declared_columns(self) -> tuple[str, ...]:
        return self.columns if self.columns is not None else (*self.field_mapping, self.target)

    @property
    def features(self) -> tuple[str, ...]:
        """Canonical features the file provides (declared columns that map to one)."""
        return tuple(self.field_mapping[c] for c in self.declared_columns if c in self.field_mapping)

    def canonical(self, column: str) -> str:
        return self.field_mapping.get(column, column)

    def source(self, canonical: str) -> str:
        """Source column of a canonical name (itself if unmapped), for messages users can act on."""
        return next((c for c, f in self.field_mapping.items() if f == canonical), canonical)

    def expected_columns(self) -> tuple[str, ...]:
        """Columns after renaming to canonical names: declared ones plus every required feature."""
        names = [self.canonical(c) for c in self.declared_columns]
        names += [f for f in (self.required_features or ()) if f not in names]
        return tuple(names)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ranges"] = {k: list(v) for k, v in self.ranges.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DatasetContract":
        d = dict(d)
        for key in ("columns", "required_features", "categorical"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        d["ranges"] = {k: tuple(v) for k, v in (d.get("ranges") or {}).items()}
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"contract {d.get('name')!r}: unknown field(s) {sorted(unknown)}; "
                             f"allowed: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)


def contract_from_record(record: Any, **overrides: Any) -> DatasetContract:
    """A contract from a catalog `DatasetRecord` (duck-typed: no import of `catalog`).

    Policy knobs that the catalog does not hold (ranges, min_rows, max_missing_share, ...) come
    as keyword overrides.
    """
    return DatasetContract(
        name=record.name, location=record.location, target=record.target, task_type=record.task_type,
        field_mapping=dict(record.field_mapping), columns=tuple(f.name for f in record.fields),
        urn=record.urn, meta=dict(record.meta), **overrides,
    )


@dataclass(frozen=True)
class Failure:
    """One reason to quarantine a dataset: the check, the column (canonical), rows affected, a fix."""

    check: str
    column: str | None
    detail: str
    rows: int | None = None
    fix: str = ""
    source_column: str | None = None

    @property
    def where(self) -> str:
        if self.column is None:
            return "table"
        if self.source_column and self.source_column != self.column:
            return f"column '{self.column}' (source '{self.source_column}')"
        return f"column '{self.column}'"

    def summary(self) -> str:
        return f"{self.where}: {self.detail} [{self.check}]"


@dataclass
class DatasetValidation:
    """The verdict on one dataset. `reason` is what the catalog status and the report show."""

    name: str
    location: str
    ok: bool
    failures: list[Failure] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    n_rows: int | None = None
    urn: str | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time: comparable across machine loads
    gx_result: dict[str, Any] | None = None  # GE's own JSON of the suite run, when it ran

    @property
    def reason(self) -> str:
        if self.ok:
            return "passed all checks"
        shown = "; ".join(f.summary() for f in self.failures[:3])
        more = len(self.failures) - 3
        return shown + (f"; and {more} more" if more > 0 else "")

    def to_dict(self, with_gx: bool = False) -> dict[str, Any]:
        d = {"name": self.name, "urn": self.urn, "location": self.location, "ok": self.ok, "reason": self.reason,
             "n_rows": self.n_rows, "failures": [asdict(f) for f in self.failures], "stats": self.stats,
             "seconds": round(self.seconds, 4), "cpu_seconds": round(self.cpu_seconds, 4)}
        if with_gx:
            d["gx_result"] = self.gx_result
        return d


class NoValidDatasetError(RuntimeError):
    """Every dataset of the fleet was quarantined: there is nothing to train on."""


@dataclass
class FleetValidation:
    """Results for a whole fleet, in the order of the contracts."""

    results: list[DatasetValidation]
    seconds: float = 0.0
    workers: int = 1

    @property
    def valid(self) -> list[DatasetValidation]:
        return [r for r in self.results if r.ok]

    @property
    def quarantined(self) -> list[DatasetValidation]:
        return [r for r in self.results if not r.ok]

    def by_name(self) -> dict[str, DatasetValidation]:
        return {r.name: r for r in self.results}

    def require_valid(self) -> "FleetValidation":
        """Stop the pipeline with a clear error when no dataset survived validation."""
        if not self.valid:
            examples = "; ".join(f"{r.name}: {r.reason}" for r in self.results[:3]) or "the fleet is empty"
            raise NoValidDatasetError(
                f"no valid dataset in the fleet: all {len(self.results)} were quarantined ({examples}). "
                "Fix the data or the catalog contracts and validate again (`hypernet validate`).")
        return self

    def catalog_status(self) -> list[dict[str, Any]]:
        """What `Catalog.set_validation(urn, ok, reason, stats)` takes, one dict per dataset."""
        return [{"urn": r.urn, "name": r.name, "ok": r.ok, "reason": r.reason, "stats": r.stats}
                for r in self.results]

    def to_dict(self) -> dict[str, Any]:
        return {"n_datasets": len(self.results), "n_valid": len(self.valid), "n_quarantined": len(self.quarantined),
                "seconds": round(self.seconds, 3), "workers": self.workers,
                "datasets": [r.to_dict() for r in self.results]}

    def write_json(self, folder: str | Path) -> Path:
        """Keep the results: `summary.json` plus GE's result per dataset under `gx/`."""
        folder = Path(folder)
        (folder / "gx").mkdir(parents=True, exist_ok=True)
        for r in self.results:
            if r.gx_result is not None:
                (folder / "gx" / f"{_safe_name(r.name)}.json").write_text(json.dumps(r.gx_result, indent=1, default=str))
        path = folder / "summary.json"
        path.write_text(json.dumps(self.to_dict(), indent=1, default=str))
        return path


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


# ---------------------------------------------------------------------------------------------
# Contract files
# ---------------------------------------------------------------------------------------------

def contracts_to_json(contracts: Sequence[DatasetContract]) -> str:
    return json.dumps({"datasets": [c.to_dict() for c in contracts]}, indent=1)


MANIFEST_NAMES = ("contracts.json", "contracts.yaml", "contracts.yml")


def load_contracts(path: str | Path, lake: "Lake | None" = None) -> list[DatasetContract]:
    """Contracts from a JSON or YAML manifest (`{"datasets": [...]}` or a list), given as a file
    or as a folder/prefix holding `contracts.json|yaml|yml`, locally or on S3 (read through
    `lake`). Relative locations are resolved against the manifest's folder."""
    if str(path).startswith("s3://"):
        return _load_s3_manifest(str(path).rstrip("/"), lake or _default_lake())
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in MANIFEST_NAMES if (path / n).exists()]
        if not found:
            raise FileNotFoundError(f"{path} holds no contracts.json or contracts.yaml; "
                                    "write one (see `flows.fleetgen.write_datasets`) or pass the file itself")
        path = found[0]
    contracts = _parse_manifest(path.read_text(), path.suffix)
    return [replace(c, location=_resolve(c.location, str(path.parent.resolve()))) for c in contracts]


def _load_s3_manifest(uri: str, lake: "Lake") -> list[DatasetContract]:
    if not uri.endswith((".json", ".yaml", ".yml")):
        found = [f"{uri}/{n}" for n in MANIFEST_NAMES if lake.exists(f"{uri}/{n}")]
        if not found:
            raise FileNotFoundError(f"{uri} holds no contracts.json or contracts.yaml")
        uri = found[0]
    contracts = _parse_manifest(lake.read_bytes(uri).decode("utf-8"), "." + uri.rsplit(".", 1)[-1])
    return [replace(c, location=_resolve(c.location, uri.rsplit("/", 1)[0])) for c in contracts]


def _parse_manifest(text: str, suffix: str) -> list[DatasetContract]:
    if suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    items = data["datasets"] if isinstance(data, dict) else data
    return [DatasetContract.from_dict(d) for d in items]


def _resolve(location: str, base: str) -> str:
    if "://" in location or Path(location).is_absolute():
        return location
    if base.startswith("s3://"):
        return f"{base}/{location}"
    return str(Path(base) / location)


# ---------------------------------------------------------------------------------------------
# Loading (stage 1)
# ---------------------------------------------------------------------------------------------

class LoadError(Exception):
    """The file cannot become a DataFrame; carries the failure to report."""

    def __init__(self, failure: Failure):
        super().__init__(failure.summary())
        self.failure = failure


def _load_failure(check: str, detail: str, column: str | None = None) -> LoadError:
    return LoadError(Failure(check=check, column=column, detail=detail, fix=FIXES[check], source_column=column))


def file_format(location: str) -> str:
    """'csv' or 'parquet', from the extension (.csv/.tsv/.txt are CSV; anything else parquet)."""
    return "csv" if location.lower().rsplit(".", 1)[-1] in ("csv", "tsv", "txt") else "parquet"


def load_table(contract: DatasetContract, lake: "Lake | None" = None) -> pd.DataFrame:
    """Read the dataset's file and check what pandas would hide; raise LoadError on a defect."""
    lake = lake or _default_lake()
    try:
        data = lake.read_bytes(contract.location)
    except FileNotFoundError:
        raise _load_failure(FILE_READABLE, f"no file at {contract.location}") from None
    except (PermissionError, ConnectionError):
        raise  # the storage is unreachable or refuses us: not this dataset's fault, stop loudly
    except OSError as exc:
        raise _load_failure(FILE_READABLE, f"cannot read {contract.location}: {exc}") from None
    if not data:
        raise _load_failure(FILE_NOT_EMPTY, "the file is empty (0 bytes)")
    if file_format(contract.location) == "csv":
        return _read_csv(data, contract)
    return _read_parquet(data)


def _read_csv(data: bytes, contract: DatasetContract) -> pd.DataFrame:
    first_line = data.split(b"\n", 1)[0]
    try:
        header_text = first_line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _load_failure(HEADER_UTF8, f"the header is not UTF-8 (byte {first_line[exc.start:exc.start + 1]!r} "
                                         f"at position {exc.start}: {first_line[:60]!r})") from None
    header = next(csv.reader([header_text], delimiter=contract.delimiter), [])
    _check_delimiter(header, header_text, contract)
    _check_unique(header)
    try:
        return pd.read_csv(io.BytesIO(data), sep=contract.delimiter, encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise _load_failure(FILE_READABLE, f"not a readable CSV file: {_first_line(exc)}") from None


def _check_delimiter(header: list[str], header_text: str, contract: DatasetContract) -> None:
    """A single header field holding another delimiter means the file uses that one."""
    if len(header) != 1 or len(contract.declared_columns) < 2:
        return
    for other in (";", "\t", "|", ","):
        if other != contract.delimiter and other in header_text:
            raise _load_failure(CSV_DELIMITER, f"the header is one field {header_text[:50]!r}: the file looks "
                                               f"{other!r}-delimited, the contract declares {contract.delimiter!r}")


def _check_unique(names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _load_failure(UNIQUE_COLUMNS, f"column name '{name}' appears {list(names).count(name)} times", name)
        seen.add(name)


def _read_parquet(data: bytes) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _load_failure(FILE_READABLE, f"not a readable parquet file ({len(data)} bytes): {_first_line(exc)}") from None
    _check_unique(table.column_names)
    return table.to_pandas()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


@lru_cache(maxsize=1)
def _default_lake() -> "Lake":
    from flows.storage import Lake

    return Lake(os.getcwd())


# ---------------------------------------------------------------------------------------------
# The expectation suite (stage 2)
# ---------------------------------------------------------------------------------------------

def _telemetry_off() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "true")


@lru_cache(maxsize=1)
def _gx() -> tuple[Any, Any, Any]:
    """(great_expectations, its expectations module, a whole-DataFrame batch definition).

    Imported here, once per process: it costs seconds and most commands never validate.
    """
    _telemetry_off()
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _memoise_expectation_type_names()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (context.data_sources.add_pandas("hypernet")
                        .add_dataframe_asset("dataset")
                        .add_batch_definition_whole_dataframe("whole"))
    return gx, gxe, batch_definition


@lru_cache(maxsize=1)
def _columns_numeric_expectation() -> type:
    """`ExpectColumnsToBeNumeric`: every listed column has a numeric (or boolean) dtype.

    A custom GE Batch Expectation because the built-in per-column one
    (`expect_column_values_to_be_in_type_list`) resolves the table's column types again for each
    column, outside GE's metric graph: 10-25 ms per column (measured), which made type checks the bulk of
    a fleet's validation time. This one reads `table.column_types` once for all columns. Columns
    absent from the table are left to `expect_table_columns_to_match_set`.
    Defined on first use because GE is imported lazily; GE registers it by its snake_case name.
    """
    _gx()
    from great_expectations.expectations.expectation import BatchExpectation
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    class ExpectColumnsToBeNumeric(BatchExpectation):
        """Expect each listed column to have a numeric or boolean dtype."""

        columns: list[str]
        metric_dependencies = ("table.column_types",)
        success_keys = ("columns",)
        domain_keys = ("batch_id",)
        args_keys = ("columns",)

        def _validate(self, metrics: dict, runtime_configuration: dict | None = None,
                      execution_engine: Any = None) -> dict:
            types = {t["name"]: t["type"] for t in metrics["table.column_types"]}
            wanted = self._get_success_kwarg("columns") or []
            bad = {c: str(types[c]) for c in wanted
                   if c in types and not (is_numeric_dtype(types[c]) or is_bool_dtype(types[c]))}
            return {"success": not bad, "result": {"observed_value": bad}}

    return ExpectColumnsToBeNumeric


def _memoise_expectation_type_names() -> None:
    """Performance workaround for GE 1.x, measured at about a fifth of fleet validation time.

    GE derives an expectation's type name from its class name with two regex substitutions each
    time it reads `Expectation.configuration`, which it does ~85 times per expectation per run.
    `camel_to_snake` is a pure function of a string, so caching it changes nothing but speed.
    If a GE release moves or renames it, this silently does nothing.
    """
    from great_expectations.expectations import expectation as module

    original = getattr(module, "camel_to_snake", None)
    if callable(original) and not hasattr(original, "cache_info"):
        module.camel_to_snake = lru_cache(maxsize=1024)(original)


def build_suite(contract: DatasetContract, docs: bool = False) -> Any:
    """The GE expectation suite for one dataset, from its contract alone (no data needed).

    `docs=True` is the Data Docs variant, whose ranges read as min and max (see `_range`).
    """
    gx, gxe, _ = _gx()
    # Passed to the constructor, not add_expectation(): that one compares each new expectation
    # with all previous ones (quadratic, 30x slower here); ours are unique by construction.
    return gx.ExpectationSuite(name=contract.name if docs else f"hypernet.{contract.name}",
                               expectations=list(_expectations(contract, gxe, docs)))


def _expectations(c: DatasetContract, gxe: Any, docs: bool = False) -> Iterable[Any]:
    yield gxe.ExpectTableRowCountToBeBetween(min_value=c.min_rows)
    yield gxe.ExpectTableColumnsToMatchSet(column_set=list(c.expected_columns()), exact_match=True)
    numeric = [f for f in c.features if f not in c.categorical]
    numeric += [c.target] if c.task_type == "regression" else []
    yield _columns_numeric_expectation()(columns=numeric)
    min_present = 1.0 - c.max_missing_share
    for feature in c.features:
        # At most max_missing_share missing, and never all of them (strict > 0 when 100 % is allowed).
        yield gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(
            column=feature, min_value=max(min_present, 0.0), strict_min=min_present <= 0)
        if feature not in c.categorical:
            yield from _range(gxe, feature, c.ranges.get(feature), docs)
    yield from _target(gxe, c, docs)


def _range(gxe: Any, column: str, declared: tuple[float | None, float | None] | None,
           docs: bool = False) -> Iterable[Any]:
    """Values inside the declared range, or at least finite (infinite values fail either way).

    Checked on the column's 0 and 1 quantiles, i.e. its exact min and max, in one aggregate
    expectation: GE's per-value `expect_column_values_to_be_between` costs about three times as
    much, and min + max as two expectations 20 % more per dataset (GE's cost is per expectation,
    not per row). The failing rows are counted when a failure is explained.
    Data Docs get the equivalent min + max pair: it reads better there, and GE 1.24's file store
    cannot serialise the quantile expectation's result (a numpy bool in its details).
    """
    low, high = declared or (None, None)
    bounds = [-FINITE if low is None else low, FINITE if high is None else high]
    if docs:
        yield gxe.ExpectColumnMinToBeBetween(column=column, min_value=bounds[0])
        yield gxe.ExpectColumnMaxToBeBetween(column=column, max_value=bounds[1])
        return
    yield gxe.ExpectColumnQuantileValuesToBeBetween(
        column=column, quantile_ranges={"quantiles": [0.0, 1.0], "value_ranges": [bounds, bounds]},
        allow_relative_error=False)


def _target(gxe: Any, c: DatasetContract, docs: bool = False) -> Iterable[Any]:
    """Target: no missing value, at least two distinct values; numeric for regression,
    at most max_classes labels for classification."""
    yield gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(column=c.target, min_value=1.0)
    if c.task_type == "regression":
        yield from _range(gxe, c.target, c.ranges.get(c.target), docs)
        yield gxe.ExpectColumnUniqueValueCountToBeBetween(column=c.target, min_value=2)
    else:
        yield gxe.ExpectColumnUniqueValueCountToBeBetween(column=c.target, min_value=2, max_value=c.max_classes)


# ---------------------------------------------------------------------------------------------
# Running and explaining
# ---------------------------------------------------------------------------------------------

def validate_dataset(contract: DatasetContract, lake: "Lake | None" = None,
                     df: pd.DataFrame | None = None) -> DatasetValidation:
    """Load (unless `df` is given), run the suite, explain failures, compute stats if valid."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = _validate(contract, lake, df)
    result.seconds, result.cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    return result


def _validate(contract: DatasetContract, lake: "Lake | None", df: pd.DataFrame | None) -> DatasetValidation:
    result = DatasetValidation(name=contract.name, location=contract.location, ok=False, urn=contract.urn)
    try:
        raw = df if df is not None else load_table(contract, lake)
    except LoadError as exc:
        result.failures = [exc.failure]
        return result
    table = raw.rename(columns=dict(contract.field_mapping))
    result.n_rows = len(table)
    gx_result = _run_suite(contract, table)
    result.gx_result = gx_result.describe_dict()
    result.failures = explain(contract, table, gx_result)
    result.ok = not result.failures
    if result.ok:
        result.stats = compute_stats(table, contract.target, contract.features, contract.task_type,
                                     categorical=contract.categorical)
    return result


def _run_suite(contract: DatasetContract, table: pd.DataFrame) -> Any:
    _, _, batch_definition = _gx()
    batch = batch_definition.get_batch(batch_parameters={"dataframe": table})
    return batch.validate(build_suite(contract), result_format="BASIC")


def explain(contract: DatasetContract, table: pd.DataFrame, gx_result: Any) -> list[Failure]:
    """Turn GE's failed results into Failures a person can act on, causes only (see `_is_echo`)."""
    failed = [r for r in gx_result.results if not r.success]
    missing = {col for r in failed if r.expectation_config.type == COLUMN_SET
               for col in (((r.result or {}).get("details") or {}).get("mismatched") or {}).get("missing") or ()}
    not_numeric = {col for r in failed if r.expectation_config.type == NUMERIC
                   for col in ((r.result or {}).get("observed_value") or {})}
    failures: list[Failure] = []
    for r in failed:
        if not _is_echo(r, table, missing, not_numeric, failures):
            failures.extend(_explain_one(contract, table, r.expectation_config.type, r.expectation_config.kwargs, r))
    return failures


def _is_echo(r: Any, table: pd.DataFrame, missing: set, not_numeric: set, so_far: list[Failure]) -> bool:
    """Whether a failed check only repeats a cause reported elsewhere: checks on a missing or
    non-numeric column (they fail or raise as a consequence), column checks on a table with no
    rows, and the range of an all-missing column (it has no min or max)."""
    kind, column = r.expectation_config.type, r.expectation_config.kwargs.get("column")
    if kind in (ROW_COUNT, COLUMN_SET, NUMERIC):
        return False
    if table.empty or column in missing or column in not_numeric:
        return True
    if kind == RANGE:
        return not table[column].notna().any()
    return False


def _explain_one(c: DatasetContract, table: pd.DataFrame, kind: str, kwargs: Mapping[str, Any], r: Any) -> list[Failure]:
    column = kwargs.get("column")
    res = r.result or {}

    def fail(detail: str, rows: int | None = None, col: str | None = column) -> Failure:
        return Failure(check=kind, column=col, detail=detail, rows=rows, fix=FIXES.get(kind, ""),
                       source_column=c.source(col) if col else None)

    error = _exception_message(r)
    if error:
        return [fail(f"the check could not run: {error}")]
    if kind == ROW_COUNT:
        n = res.get("observed_value")
        return [fail(f"{n} rows; at least {kwargs.get('min_value')} required", rows=n)]
    if kind == COLUMN_SET:
        return _explain_columns(c, res, fail)
    if kind == NUMERIC:
        return [_explain_not_numeric(table[col], dtype, partial(fail, col=col))
                for col, dtype in (res.get("observed_value") or {}).items()]
    if kind == NON_NULL:
        return [_explain_missing(c, column, len(table), float(res.get("observed_value") or 0.0), fail)]
    if kind == RANGE:
        return [_explain_range(c, table[column], fail)]
    if kind == DISTINCT:
        n = res.get("observed_value")
        if c.task_type == "classification" and n and n > c.max_classes:
            return [fail(f"{n} distinct labels, more than max_classes={c.max_classes}: "
                         "is this a regression target?")]
        value = table[column].dropna().unique()[:1].tolist()
        return [fail(f"only {n} distinct value(s) {value}: nothing to learn", rows=len(table))]
    return [fail(f"failed: {json.dumps(res, default=str)[:200]}")]


def _exception_message(r: Any) -> str | None:
    info = r.exception_info or {}
    entries = info.values() if all(isinstance(v, dict) for v in info.values()) and info else [info]
    for entry in entries:
        if entry.get("raised_exception"):
            return _first_line(Exception(entry.get("exception_message") or "unknown error"))
    return None


def _explain_columns(c: DatasetContract, res: Mapping[str, Any], fail: Any) -> list[Failure]:
    mismatch = (res.get("details") or {}).get("mismatched") or {}
    out = []
    for name in sorted(mismatch.get("missing") or ()):
        what = "the target" if name == c.target else "a required feature"
        out.append(fail(f"{what} is missing from the file (expected source column '{c.source(name)}')", col=name))
    for name in sorted(mismatch.get("unexpected") or (), key=str):
        out.append(fail("the file has this column but the catalog schema does not declare it", col=str(name)))
    return out


def _explain_not_numeric(values: pd.Series, dtype: Any, fail: Any) -> Failure:
    bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
    examples = ", ".join(repr(v) for v in bad.unique()[:3].tolist())
    return fail(f"dtype {dtype}, not numeric: {len(bad)} value(s) are not numbers (e.g. {examples})", rows=len(bad))


def _explain_missing(c: DatasetContract, column: str, n_rows: int, present: float, fail: Any) -> Failure:
    n_missing = n_rows - round(present * n_rows)
    if column == c.target:
        return fail(f"the target has {n_missing} missing value(s); every row needs one", rows=n_missing)
    if n_missing == n_rows:
        return fail(f"every value is missing ({n_rows} rows)", rows=n_missing)
    return fail(f"{1 - present:.0%} of values missing ({n_missing} rows), over the "
                f"{c.max_missing_share:.0%} allowed", rows=n_missing)


def _explain_range(c: DatasetContract, values: pd.Series, fail: Any) -> Failure:
    """Count the rows outside the declared range (or non-finite), with a few examples."""
    low, high = c.ranges.get(str(values.name)) or (None, None)
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(x) & ~np.isnan(x)
        if low is not None:
            bad |= x < low
        if high is not None:
            bad |= x > high
    examples = ", ".join(f"{v:g}" for v in pd.unique(x[bad])[:4])
    n_inf = int(np.isinf(x).sum())
    if low is None and high is None:
        return fail(f"{n_inf} non-finite value(s) (e.g. {examples})", rows=n_inf)
    inf_note = f", {n_inf} of them infinite" if n_inf else ""
    return fail(f"{int(bad.sum())} value(s) outside the declared range [{_bound(low, '-inf')}, {_bound(high, 'inf')}]"
                f"{inf_note} (e.g. {examples})", rows=int(bad.sum()))


def _bound(v: float | None, unbounded: str) -> str:
    return unbounded if v is None else f"{v:g}"


# ---------------------------------------------------------------------------------------------
# Fleets
# ---------------------------------------------------------------------------------------------

PARALLEL_MIN_DATASETS = 16  # below this, starting worker processes costs more than it saves


def validate_fleet(contracts: Sequence[DatasetContract], lake: "Lake | None" = None, *,
                   workers: int | None = None, results_dir: str | Path | None = None) -> FleetValidation:
    """Validate every dataset; quarantined ones are reported, the rest go on.

    `workers=None` uses one process per CPU (at most 8) for fleets of PARALLEL_MIN_DATASETS or
    more, else runs in this process. Results keep the contracts' order. Names must be unique.
    """
    names = [c.name for c in contracts]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"dataset name {dup[0]!r} appears more than once in the fleet; names must be unique")
    n_workers = _n_workers(len(contracts), workers)
    start = time.perf_counter()
    if n_workers <= 1:
        results = [validate_dataset(c, lake) for c in contracts]
    else:
        results = _validate_in_processes(contracts, lake, n_workers)
    fleet = FleetValidation(results, seconds=time.perf_counter() - start, workers=n_workers)
    if results_dir is not None:
        fleet.write_json(results_dir)
    return fleet


def _n_workers(n: int, workers: int | None) -> int:
    if workers is not None:
        return max(1, min(workers, n))
    if n < PARALLEL_MIN_DATASETS:
        return 1
    return max(1, min(os.cpu_count() or 1, 8, n))


def _validate_in_processes(contracts: Sequence[DatasetContract], lake: "Lake | None", n_workers: int) -> list[DatasetValidation]:
    """Spread the fleet over worker processes forked from a server that preloaded GE.

    A fork server (not a plain fork) because the caller may run threads (Prefect, boto3) that
    must not be forked mid-lock; the server is a clean single-threaded process that imports GE
    once, so each worker starts in milliseconds with GE already in memory.
    """
    _telemetry_off()
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["flows.validation", "great_expectations", "great_expectations.expectations"])
    else:  # Windows: each worker imports GE itself
        ctx = multiprocessing.get_context("spawn")
    chunk = max(1, len(contracts) // (n_workers * 4))
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(_env_snapshot(),)) as pool:
        return list(pool.map(_validate_worker, contracts, [lake] * len(contracts), chunksize=chunk))


# Environment that decides how a worker reaches storage. Workers are forked from the fork server,
# whose environment is the caller's at the time the server started; these are brought up to date.
_WORKER_ENV_PREFIXES = ("AWS_", "HYPERNET_", "GX_", "DO_NOT_TRACK")


def _env_snapshot() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(_WORKER_ENV_PREFIXES)}


def _worker_init(env: dict[str, str]) -> None:
    for key in [k for k in os.environ if k.startswith(_WORKER_ENV_PREFIXES) and k not in env]:
        del os.environ[key]
    os.environ.update(env)


def _validate_worker(contract: DatasetContract, lake: "Lake | None") -> DatasetValidation:
    return validate_dataset(contract, lake)


# ---------------------------------------------------------------------------------------------
# Data Docs (on demand)
# ---------------------------------------------------------------------------------------------

def build_data_docs(contracts: Sequence[DatasetContract], project_dir: str | Path,
                    lake: "Lake | None" = None) -> Path:
    """Run each dataset's suite through a file-backed GE context and build its Data Docs site.

    Slower than `validate_fleet` (GE stores every suite and result as files), hence on demand only
    (`hypernet validate --docs`). Datasets that fail to load have no GE run and no page; their
    reason is in the report and in summary.json. GE keeps its project in `<project_dir>/gx/`.
    Returns the site's index.html.
    """
    gx, _, _ = _gx()
    context = gx.get_context(mode="file", project_root_dir=str(project_dir))
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = _docs_batch_definition(context)
    for contract in contracts:
        try:
            table = load_table(contract, lake).rename(columns=dict(contract.field_mapping))
        except LoadError:
            continue
        suite = context.suites.add_or_update(build_suite(contract, docs=True))
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=contract.name, data=batch_definition, suite=suite))
        definition.run(batch_parameters={"dataframe": table}, result_format="BASIC")
    context.build_data_docs()
    site = context.get_docs_sites_urls()[0]["site_url"]
    return Path(site.removeprefix("file://"))


def _docs_batch_definition(context: Any) -> Any:
    try:
        source = context.data_sources.get("hypernet")
    except (KeyError, ValueError, LookupError):
        source = context.data_sources.add_pandas("hypernet")
    try:
        asset = source.get_asset("dataset")
    except LookupError:
        asset = source.add_dataframe_asset("dataset")
    try:
        return asset.get_batch_definition("whole")
    except (KeyError, ValueError, LookupError):
        return asset.add_batch_definition_whole_dataframe("whole")


# ---------------------------------------------------------------------------------------------
# From valid data to model inputs
# ---------------------------------------------------------------------------------------------

@dataclass
class CanonicalArrays:
    """A valid dataset as the model consumes it: canonical feature -> float values (NaN = missing)."""

    name: str
    features: dict[str, np.ndarray]
    target: np.ndarray
    meta: dict[str, Any]


def canonical_arrays(contract: DatasetContract, table: pd.DataFrame) -> CanonicalArrays:
    """Numeric canonical features and the target of a (valid) source table.

    Pass the raw table (source names); it is renamed here. Categorical features are left out:
    the model takes numbers. Feeds `hypernet_core.DatasetTable(name, features, target, meta)`.
    """
    renamed = table.rename(columns=dict(contract.field_mapping))
    features = {f: renamed[f].to_numpy(dtype=np.float64, na_value=np.nan)
                for f in contract.features if f not in contract.categorical}
    target = renamed[contract.target]
    y = target.to_numpy(dtype=np.float64) if contract.task_type == "regression" else target.to_numpy()
    return CanonicalArrays(contract.name, features, y, dict(contract.meta))


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
