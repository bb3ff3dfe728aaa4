"""pandas tables <-> hypernet_core DatasetTables (the core takes numpy; pandas I/O stays here)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from hypernet_core import DatasetTable, FleetError


def numeric_features(df: pd.DataFrame, name: str, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Columns as float arrays; a two-valued text column (Yes/No, Male/Female) becomes 0/1.

    Call it on the whole table, not per source: a source whose column holds only one of the two
    levels must still get the same 0/1 meaning as the others."""
    out = {}
    for col in columns:
        if col not in df.columns:
            raise FleetError(name, col, "column not found", f"use one of {list(df.columns)}")
        s = df[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            out[col] = s.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        levels = sorted(s.dropna().astype(str).unique())
        if len(levels) > 2:
            raise FleetError(name, col, f"text column with {len(levels)} levels", "one-hot encode it first")
        out[f"{col}={levels[-1]}"] = (s.astype(str) == levels[-1]).where(s.notna()).to_numpy(np.float64, na_value=np.nan)
    return out


def split_by_group(df: pd.DataFrame, group: str, target: str, features: Sequence[str] | None = None,
                   meta: Sequence[str] = (), task: str = "regression") -> list[DatasetTable]:
    """One long table with a source column -> one DatasetTable per source.

    Meta-feature columns must be constant within a source (they describe the source, not the row).
    Features default to every column that is not the group, the target or a meta-feature.
    """
    for col in (group, target, *meta):
        if col not in df.columns:
            raise FleetError("<table>", col, "column not found", f"use one of {list(df.columns)}")
    features = list(features) if features else [c for c in df.columns if c not in {group, target, *meta}]
    encoded = pd.DataFrame(numeric_features(df, "<table>", features), index=df.index)
    tables = []
    for key, part in df.groupby(group, sort=True):
        name = str(key)
        meta_values = {}
        for m in meta:
            vals = part[m].dropna().unique()
            if len(vals) > 1:
                raise FleetError(name, m, f"meta-feature takes {len(vals)} values within one source",
                                 "meta-features must be constant per source; move it to --features")
            meta_values[m] = _scalar(vals[0]) if len(vals) else None
        y = part[target].to_numpy()
        if task == "regression" and pd.api.types.is_numeric_dtype(part[target]):
            y = y.astype(np.float64)
        rows = encoded.loc[part.index]
        tables.append(DatasetTable(name, {c: rows[c].to_numpy() for c in rows.columns}, y, meta_values))
    return tables


def _scalar(v: object) -> float | int | str | bool:
    return v.item() if isinstance(v, np.generic) else v
