"""Statistical meta-features of a valid dataset, and how they join the declared ones.

The catalog declares meta-features (region, beds, ...); validation measures others (size, missing
share, target location and spread, a compact summary of the features). They are written back to
the catalog as the dataset's stats, and the model may condition on some of them too
(`model_meta`, configurable by the list of names it keeps).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

# Dataset-level stats that make sense as model inputs by default. Per-feature means and spreads
# stay out by default: sources use different units, so they describe the source more than the data.
DEFAULT_MODEL_STATS = ("log_n_rows", "missing_share", "target_mean", "target_std")
STAT_PREFIX = "stat."


def compute_stats(table: pd.DataFrame, target: str, features: Sequence[str], task_type: str,
                  categorical: Sequence[str] = ()) -> dict[str, float]:
    """Row count, missing share, target mean/spread (or class count and balance), and per
    numeric feature its mean and standard deviation (`<feature>.mean`, `<feature>.std`).

    `table` uses canonical names (as validation renames it). Values are plain floats, ready for JSON.
    """
    n = len(table)
    present = [f for f in features if f in table.columns]
    stats: dict[str, float] = {
        "n_rows": float(n),
        "log_n_rows": math.log(n) if n else 0.0,
        "n_features": float(len(present)),
        "missing_share": float(table[present].isna().to_numpy().mean()) if present and n else 0.0,
    }
    stats.update(_target_stats(table[target], task_type))
    for f in present:
        if f in categorical:
            continue
        values = pd.to_numeric(table[f], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        stats[f"{f}.mean"], stats[f"{f}.std"] = _mean_std(values)
    return {k: _finite(v) for k, v in stats.items()}


def _target_stats(y: pd.Series, task_type: str) -> dict[str, float]:
    if task_type == "regression":
        mean, std = _mean_std(y.to_numpy(dtype=np.float64, na_value=np.nan))
        return {"target_mean": mean, "target_std": std}
    shares = y.value_counts(normalize=True)
    return {"n_classes": float(len(shares)), "majority_share": float(shares.iloc[0]) if len(shares) else 0.0}


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def _finite(v: float) -> float:
    return float(v) if math.isfinite(v) else 0.0


def model_meta(declared: Mapping[str, Any], stats: Mapping[str, float],
               use: Iterable[str] | None = DEFAULT_MODEL_STATS) -> dict[str, Any]:
    """Declared meta-features plus the chosen stats (prefixed `stat.`), as the model's conditioning.

    `use=None` keeps only the declared ones; `use=("*",)` adds every stat. A declared key that
    collides with a prefixed stat wins, so a catalog value is never shadowed.
    """
    chosen = list(stats) if use is not None and "*" in use else list(use or ())
    out = {f"{STAT_PREFIX}{k}": stats[k] for k in chosen if k in stats}
    out.update(declared)
    return out
