"""Synthetic "hospitals" fleet and a corpus of deliberately broken datasets.

Real fleets are messy in known ways, and the pipeline must cope with each of them; this module
makes them on purpose, deterministically from a seed:

* the healthy fleet: sources name columns differently, lack some features, report some
  measurements in other units, and range from tens to thousands of rows. The target (length of
  stay, days) depends on the features through hospital-specific coefficients that are a function
  of the declared meta-features, so a hypernetwork has something to learn.
* the broken corpus: one defect per dataset (missing target, all-NaN column, text in a numeric
  column, empty file, ...), each with the check and column that must quarantine it.

Everything is produced in memory as bytes plus a `DatasetContract`, then written to a local
folder or to the lake (`flows.storage.Lake`, local or S3) with a `contracts.json` manifest that
`hypernet validate PATH` reads.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from flows.validation import DatasetContract, contracts_to_json

if TYPE_CHECKING:
    from flows.storage import Lake

TARGET_ALIASES = ("los_days", "length_of_stay", "LOS", "stay_days")
REGIONS = ("north", "south", "east", "west", "capital")
ALWAYS_PRESENT = ("age", "bmi", "systolic_bp")
OPTIONAL = ("cholesterol", "glucose", "heart_rate", "smoker", "prior_admissions")


@dataclass(frozen=True)
class Unit:
    """How one source reports a canonical feature: column aliases, scale factor and declared range."""

    aliases: tuple[str, ...]
    factor: float  # source value = canonical value * factor
    low: float
    high: float


# Canonical feature -> the ways sources report it. Ranges are in each unit's own scale.
UNITS: dict[str, tuple[Unit, ...]] = {
    "age": (Unit(("age", "Age", "patient_age", "AGE_YRS", "edad"), 1.0, 0, 120),
            Unit(("age_months",), 12.0, 0, 1440)),
    "bmi": (Unit(("bmi", "BMI", "body_mass_index"), 1.0, 10, 80),),
    "systolic_bp": (Unit(("sbp", "systolic_bp", "SysBP", "bp_systolic"), 1.0, 60, 260),),
    "cholesterol": (Unit(("chol", "cholesterol", "CHOL_mgdl"), 1.0, 50, 500),
                    Unit(("chol_mmol",), 1 / 38.67, 1.3, 13.0)),
    "glucose": (Unit(("glucose", "GLU", "glucose_mgdl"), 1.0, 30, 700),
                Unit(("glucose_mmol",), 1 / 18.016, 1.6, 39.0)),
    "heart_rate": (Unit(("hr", "heart_rate", "pulse"), 1.0, 20, 250),),
    "smoker": (Unit(("smoker", "is_smoker", "smoking"), 1.0, 0, 1),),
    "prior_admissions": (Unit(("prior_adm", "n_prior_admissions", "prev_visits"), 1.0, 0, 100),),
}
TARGET_RANGE = (0.0, 365.0)


@dataclass(frozen=True)
class GeneratedDataset:
    """One generated file: its bytes, the contract that describes it, and what validation must say.

    `expect_check`/`expect_column` are None for a healthy dataset; for a broken one they name the
    check (a GE expectation type or a load check) and the column (canonical name; None for
    table-level defects) that must appear in its quarantine reason.
    """

    contract: DatasetContract
    filename: str
    payload: bytes
    expect_check: str | None = None
    expect_column: str | None = None
    defect: str = ""

    @property
    def healthy(self) -> bool:
        return self.expect_check is None


# ---------------------------------------------------------------------------------------------
# Healthy fleet
# ---------------------------------------------------------------------------------------------

def _canonical_rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Patients in canonical units (years, kg/m², mmHg, mg/dL, bpm, 0/1, count)."""
    age = rng.uniform(18, 95, n)
    return pd.DataFrame({
        "age": age,
        "bmi": np.clip(rng.normal(27, 5, n), 14, 60),
        "systolic_bp": np.clip(rng.normal(110 + 0.4 * age, 15, n), 80, 240),
        "cholesterol": np.clip(rng.normal(200, 40, n), 90, 450),
        "glucose": np.clip(rng.lognormal(np.log(105), 0.25, n), 50, 600),
        "heart_rate": np.clip(rng.normal(78, 12, n), 40, 180),
        "smoker": (rng.random(n) < 0.25).astype("int64"),
        "prior_admissions": rng.poisson(1.2, n).astype("int64"),
    })


def _hospital_meta(rng: np.random.Generator) -> dict[str, object]:
    return {
        "region": str(rng.choice(REGIONS)),
        "beds": int(rng.integers(50, 1200)),
        "teaching": bool(rng.random() < 0.3),
        "urban": bool(rng.random() < 0.6),
    }


def _length_of_stay(x: pd.DataFrame, meta: dict[str, object], rng: np.random.Generator) -> np.ndarray:
    """Days in hospital: a base that grows with size and teaching status, an age slope that
    depends on the region, plus risk factors and noise. Always inside TARGET_RANGE."""
    base = 2.0 + 1.5 * float(meta["teaching"]) + meta["beds"] / 600.0  # type: ignore[operator]
    age_slope = {"north": 0.06, "south": 0.03, "east": 0.05, "west": 0.02, "capital": 0.04}[str(meta["region"])]
    los = (base + age_slope * (x["age"] - 50) + 0.08 * (x["bmi"] - 27) + 0.02 * (x["systolic_bp"] - 130)
           + 0.01 * (x["glucose"] - 105) + 1.2 * x["smoker"] + 0.6 * x["prior_admissions"]
           + rng.normal(0, 1.0, len(x)))
    return np.clip(los.to_numpy(), 0.5, 120.0).round(2)


def _source_layout(rng: np.random.Generator) -> tuple[list[str], dict[str, Unit], dict[str, str]]:
    """Which canonical features this source has, in which unit, under which column name."""
    n_drop = int(rng.integers(0, 3))
    dropped = set(rng.choice(OPTIONAL, size=n_drop, replace=False).tolist())
    features = [f for f in (*ALWAYS_PRESENT, *OPTIONAL) if f not in dropped]
    units = {f: UNITS[f][int(rng.integers(len(UNITS[f])))] for f in features}
    columns = {f: str(rng.choice(units[f].aliases)) for f in features}
    return features, units, columns


def _hospital(i: int, rng: np.random.Generator, min_rows: int, max_rows: int) -> tuple[pd.DataFrame, DatasetContract, str]:
    """One healthy source: its table (source names and units) and its contract."""
    name = f"hospital_{i:03d}"
    n = int(np.exp(rng.uniform(np.log(min_rows), np.log(max_rows))))
    meta = _hospital_meta(rng)
    canonical = _canonical_rows(rng, n)
    target_col = str(rng.choice(TARGET_ALIASES))
    y = _length_of_stay(canonical, meta, rng)
    features, units, columns = _source_layout(rng)
    table = pd.DataFrame({columns[f]: _in_unit(canonical[f], units[f]) for f in features})
    for col in table.columns:  # a few missing values, different per column and source
        table[col] = table[col].where(rng.random(n) >= rng.uniform(0, 0.08))
    table[target_col] = y
    fmt = "parquet" if rng.random() < 0.5 else "csv"
    contract = DatasetContract(
        name=name, location=f"{name}.{fmt}", target=target_col, task_type="regression",
        field_mapping={columns[f]: f for f in features},
        ranges={**{f: (units[f].low, units[f].high) for f in features}, target_col: TARGET_RANGE},
        meta=meta,
    )
    return table, contract, fmt


def _in_unit(values: pd.Series, unit: Unit) -> pd.Series:
    scaled = values * unit.factor
    return scaled if values.dtype.kind == "f" else scaled.astype(values.dtype)


def _encode(table: pd.DataFrame, fmt: str) -> bytes:
    """A table as file bytes (CSV or parquet), as a source would deliver it."""
    if fmt == "csv":
        return table.to_csv(index=False).encode("utf-8")
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    return buf.getvalue()


def make_fleet(n: int = 50, seed: int = 0, min_rows: int = 30, max_rows: int = 3000,
               prefix: str = "") -> list[GeneratedDataset]:
    """`n` healthy hospitals, deterministic for a seed. Sizes are log-uniform in [min_rows, max_rows]."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        table, contract, fmt = _hospital(i, rng, min_rows, max_rows)
        contract = replace(contract, name=prefix + contract.name, location=prefix + contract.location)
        out.append(GeneratedDataset(contract, contract.location, _encode(table, fmt)))
    return out


# ---------------------------------------------------------------------------------------------
# Broken corpus
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Base:
    """A healthy table to break, with its contract and the source column of a few features."""

    table: pd.DataFrame
    contract: DatasetContract

    def col(self, canonical: str) -> str:
        return next(c for c, f in self.contract.field_mapping.items() if f == canonical)


def _base(seed: int, name: str) -> _Base:
    """A healthy source of 120 rows with every feature present, in canonical units."""
    rng = np.random.default_rng(seed)
    meta = _hospital_meta(rng)
    x = _canonical_rows(rng, 120)
    table = x.rename(columns={"systolic_bp": "sbp", "heart_rate": "hr", "prior_admissions": "prior_adm"})
    table["los_days"] = _length_of_stay(x, meta, rng)
    mapping = {"age": "age", "bmi": "bmi", "sbp": "systolic_bp", "cholesterol": "cholesterol",
               "glucose": "glucose", "hr": "heart_rate", "smoker": "smoker", "prior_adm": "prior_admissions"}
    ranges = {f: (UNITS[f][0].low, UNITS[f][0].high) for f in mapping.values()}
    contract = DatasetContract(name=name, location=f"{name}.csv", target="los_days", task_type="regression",
                               field_mapping=mapping, ranges={**ranges, "los_days": TARGET_RANGE}, meta=meta)
    return _Base(table, contract)


# Each breaker turns a healthy base into (bytes, extension, contract, check, column).
Broken = tuple[bytes, str, DatasetContract, str, str | None]


def _csv(b: _Base) -> bytes:
    return _encode(b.table, "csv")


def _missing_target(b: _Base) -> Broken:
    return _encode(b.table.drop(columns="los_days"), "csv"), "csv", b.contract, "expect_table_columns_to_match_set", "los_days"


def _all_nan_column(b: _Base) -> Broken:
    t = b.table.assign(bmi=np.nan)
    return _encode(t, "parquet"), "parquet", b.contract, "expect_column_proportion_of_non_null_values_to_be_between", "bmi"


def _strings_in_numeric(b: _Base) -> Broken:
    t = b.table.astype({"glucose": object})
    t.loc[[3, 17, 40], "glucose"] = ["n/a", "high", "see notes"]
    return _encode(t, "csv"), "csv", b.contract, "expect_columns_to_be_numeric", "glucose"


def _empty_file(b: _Base) -> Broken:
    return b"", "csv", b.contract, "file_not_empty", None


def _duplicate_columns(b: _Base) -> Broken:
    body = _csv(b).decode().splitlines()
    header = body[0].split(",")
    header[header.index("bmi")] = "age"
    return "\n".join([",".join(header), *body[1:]]).encode(), "csv", b.contract, "column_names_unique", "age"


def _infinite_values(b: _Base) -> Broken:
    t = b.table.copy()
    t.loc[[5, 6, 77], "sbp"] = [np.inf, -np.inf, np.inf]
    return _encode(t, "parquet"), "parquet", b.contract, "expect_column_quantile_values_to_be_between", "systolic_bp"


def _infinite_values_no_range(b: _Base) -> Broken:
    t = b.table.copy()
    t.loc[[8, 9], "hr"] = np.inf
    ranges = {k: v for k, v in b.contract.ranges.items() if k != "heart_rate"}
    return (_encode(t, "parquet"), "parquet", replace(b.contract, ranges=ranges),
            "expect_column_quantile_values_to_be_between", "heart_rate")


def _undeclared_columns(b: _Base) -> Broken:
    t = b.table.assign(patient_ssn=np.arange(len(b.table)) + 100000)
    return _encode(t, "csv"), "csv", b.contract, "expect_table_columns_to_match_set", "patient_ssn"


def _wrong_delimiter(b: _Base) -> Broken:
    return b.table.to_csv(index=False, sep=";").encode(), "csv", b.contract, "csv_delimiter", None


def _truncated_parquet(b: _Base) -> Broken:
    data = _encode(b.table, "parquet")
    return data[: len(data) // 2], "parquet", b.contract, "file_readable", None


def _non_utf8_header(b: _Base) -> Broken:
    t = b.table.rename(columns={"age": "âge"})
    contract = replace(b.contract, field_mapping={("âge" if c == "age" else c): f for c, f in b.contract.field_mapping.items()})
    return t.to_csv(index=False).encode("latin-1"), "csv", contract, "header_utf8", None


def _single_value_target(b: _Base) -> Broken:
    return (_encode(b.table.assign(los_days=4.0), "csv"), "csv", b.contract,
            "expect_column_unique_value_count_to_be_between", "los_days")


def _too_few_rows(b: _Base) -> Broken:
    return _encode(b.table.head(6), "csv"), "csv", b.contract, "expect_table_row_count_to_be_between", None


def _header_only(b: _Base) -> Broken:
    return _encode(b.table.head(0), "csv"), "csv", b.contract, "expect_table_row_count_to_be_between", None


def _target_nulls(b: _Base) -> Broken:
    t = b.table.copy()
    t.loc[t.index[::10], "los_days"] = np.nan
    return (_encode(t, "parquet"), "parquet", b.contract,
            "expect_column_proportion_of_non_null_values_to_be_between", "los_days")


def _out_of_range(b: _Base) -> Broken:
    t = b.table.copy()
    t.loc[[1, 2, 3, 4], "age"] = [250.0, 310.0, -4.0, 999.0]
    return _encode(t, "csv"), "csv", b.contract, "expect_column_quantile_values_to_be_between", "age"


def _negative_target(b: _Base) -> Broken:
    t = b.table.copy()
    t.loc[[10, 11], "los_days"] = -3.0
    return _encode(t, "csv"), "csv", b.contract, "expect_column_quantile_values_to_be_between", "los_days"


def _missing_feature(b: _Base) -> Broken:
    return (_encode(b.table.drop(columns="bmi"), "parquet"), "parquet", b.contract,
            "expect_table_columns_to_match_set", "bmi")


def _too_many_missing(b: _Base) -> Broken:
    t = b.table.copy()
    t.loc[t.index[: int(len(t) * 0.7)], "glucose"] = np.nan
    return (_encode(t, "csv"), "csv", b.contract,
            "expect_column_proportion_of_non_null_values_to_be_between", "glucose")


def _target_as_text(b: _Base) -> Broken:
    t = b.table.assign(los_days=[f"{v:.0f} days" for v in b.table["los_days"]])
    return _encode(t, "csv"), "csv", b.contract, "expect_columns_to_be_numeric", "los_days"


def _csv_named_parquet(b: _Base) -> Broken:
    return _csv(b), "parquet", b.contract, "file_readable", None


def _renamed_column(b: _Base) -> Broken:
    t = b.table.rename(columns={"sbp": "SBP_mmHg"})
    return _encode(t, "csv"), "csv", b.contract, "expect_table_columns_to_match_set", "systolic_bp"


def _missing_file(b: _Base) -> Broken:
    return b"", "csv", b.contract, "file_readable", None  # written nowhere: see make_broken_corpus


BREAKERS: dict[str, Callable[[_Base], Broken]] = {
    "missing_target": _missing_target,
    "all_nan_column": _all_nan_column,
    "strings_in_numeric": _strings_in_numeric,
    "empty_file": _empty_file,
    "duplicate_columns": _duplicate_columns,
    "infinite_values": _infinite_values,
    "infinite_values_no_range": _infinite_values_no_range,
    "undeclared_column": _undeclared_columns,
    "wrong_delimiter": _wrong_delimiter,
    "truncated_parquet": _truncated_parquet,
    "non_utf8_header": _non_utf8_header,
    "single_value_target": _single_value_target,
    "too_few_rows": _too_few_rows,
    "header_only": _header_only,
    "target_nulls": _target_nulls,
    "out_of_range": _out_of_range,
    "negative_target": _negative_target,
    "missing_feature": _missing_feature,
    "too_many_missing": _too_many_missing,
    "target_as_text": _target_as_text,
    "csv_named_parquet": _csv_named_parquet,
    "renamed_column": _renamed_column,
    "missing_file": _missing_file,
}


def make_broken_corpus(seed: int = 0, prefix: str = "broken_") -> list[GeneratedDataset]:
    """One dataset per defect in BREAKERS, each derived from its own healthy base table.

    `missing_file` has an empty payload and is marked so that writers skip it: its contract
    points at a file that does not exist.
    """
    out = []
    for i, (defect, breaker) in enumerate(BREAKERS.items()):
        name = f"{prefix}{defect}"
        payload, ext, contract, check, column = breaker(_base(seed * 1000 + i, name))
        filename = f"{name}.{ext}"
        out.append(GeneratedDataset(replace(contract, location=filename), filename, payload,
                                    expect_check=check, expect_column=column, defect=defect))
    return out


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def write_datasets(items: list[GeneratedDataset], dest: "str | Path | Lake",
                   manifest: str = "contracts.json") -> list[DatasetContract]:
    """Write files and a contract manifest to a folder or a lake; return contracts with full locations.

    In a folder the manifest keeps file names relative (the folder can be moved); in a lake the
    locations are full URIs. The `missing_file` defect is never written.
    """
    if isinstance(dest, (str, Path)) and not str(dest).startswith("s3://"):
        return _write_folder(items, Path(dest), manifest)
    from flows.storage import Lake

    lake = dest if isinstance(dest, Lake) else Lake(str(dest))
    contracts = []
    for item in items:
        uri = lake.uri_for(item.filename)
        if item.defect != "missing_file":
            lake.write_bytes(item.filename, item.payload, overwrite=True)
        contracts.append(replace(item.contract, location=uri))
    lake.write_bytes(manifest, contracts_to_json(contracts).encode(), overwrite=True)
    return contracts


def _write_folder(items: list[GeneratedDataset], folder: Path, manifest: str) -> list[DatasetContract]:
    folder.mkdir(parents=True, exist_ok=True)
    for item in items:
        if item.defect != "missing_file":
            (folder / item.filename).write_bytes(item.payload)
    (folder / manifest).write_text(contracts_to_json([i.contract for i in items]))
    return [replace(i.contract, location=str((folder / i.filename).resolve())) for i in items]


def expected_outcomes(items: list[GeneratedDataset]) -> dict[str, tuple[str | None, str | None]]:
    """name -> (check, column) that must quarantine it; (None, None) for healthy datasets."""
    return {i.contract.name: (i.expect_check, i.expect_column) for i in items}


def write_demo(folder: str | Path, n: int = 50, seed: int = 0) -> dict[str, Path]:
    """The demo: a healthy fleet and the broken corpus in two sub-folders, each with its manifest."""
    folder = Path(folder)
    write_datasets(make_fleet(n, seed), folder / "hospitals")
    write_datasets(make_broken_corpus(seed), folder / "broken")
    (folder / "README.json").write_text(json.dumps({"hospitals": n, "broken": len(BREAKERS), "seed": seed}))
    return {"hospitals": folder / "hospitals" / "contracts.json", "broken": folder / "broken" / "contracts.json"}
