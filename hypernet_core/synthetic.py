"""Synthetic fleets with a known structure, for tests and benchmarks.

Dataset d has its own linear rule y = x·w_d + b_d (+ a mild non-linearity), where w_d depends on
its meta-features (so zero-shot is possible) plus a part of its own (so the embedding matters).
"""

from __future__ import annotations

import numpy as np

from hypernet_core.fleet import DatasetTable


def synthetic_fleet(n_datasets: int, rows: int | tuple[int, int] = 200, n_features: int = 5,
                    task: str = "regression", noise: float = 0.3, own_effect: float = 0.5,
                    missing_features: float = 0.0, seed: int = 0) -> list[DatasetTable]:
    """`rows` is a count or a (low, high) range drawn per dataset; `missing_features` is the chance
    that a dataset lacks each feature beyond the first (it then simply doesn't have that column)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=n_features)
    meta_effect = rng.normal(size=(3, n_features))        # numeric meta-features -> coefficients
    region_effect = rng.normal(size=(3, n_features)) * 0.5  # categorical meta-feature -> coefficients
    tables = []
    for d in range(n_datasets):
        numeric = rng.normal(size=3)
        region = int(rng.integers(3))
        w = base + numeric @ meta_effect + region_effect[region] + own_effect * rng.normal(size=n_features)
        b = 0.5 * numeric[0] + own_effect * rng.normal()
        n = rows if isinstance(rows, int) else int(rng.integers(rows[0], rows[1] + 1))
        x = rng.normal(size=(n, n_features))
        signal = x @ w / np.sqrt(n_features) + b + 0.3 * np.sin(2 * x[:, 0])
        y = signal + noise * rng.normal(size=n)
        features = {f"f{j}": x[:, j] for j in range(n_features) if j == 0 or rng.random() >= missing_features}
        meta = {"m0": float(numeric[0]), "m1": float(numeric[1]), "m2": float(numeric[2]), "region": "abc"[region]}
        target = y if task == "regression" else (y > np.median(signal)).astype(np.int64)
        tables.append(DatasetTable(f"ds{d:04d}", features, target, meta))
    return tables
