"""Classical reference models on the same splits: ridge regressions and a mixed-effects model.

They give the hypernetwork's numbers an honest frame: the methods a statistician would fit first.
Regression only.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from hypernet_core import DatasetTable, FleetEncoder, r2


def _design(enc: FleetEncoder, tables: Sequence[DatasetTable]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardised features (missing -> 0), encoded meta per row, dataset index per row, target."""
    fleet = enc.transform(tables, known=False)
    x, meta_rows = fleet.x.numpy().astype(np.float64), fleet.meta.numpy()[fleet.dataset.numpy()]
    return x, meta_rows.astype(np.float64), fleet.dataset.numpy(), np.concatenate([t.target for t in tables])


def ridge_fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Closed-form ridge with an unpenalised intercept."""
    mx, my = x_train.mean(0), y_train.mean()
    xc = x_train - mx
    coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x_train.shape[1]), xc.T @ (y_train - my))
    return (x_test - mx) @ coef + my


def _one_hot(idx: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n)[idx]


def seen_references(train: Sequence[DatasetTable], test: Sequence[DatasetTable], slope: str | None = None) -> dict[str, float]:
    """R² on held-out rows of datasets seen in training."""
    enc = FleetEncoder.fit(train)
    xa, ma, da, ya = _design(enc, train)
    xb, mb, db, yb = _design(enc, test)
    n = len(train)
    out = {
        "ridge_pooled": r2_np(yb, ridge_fit_predict(xa, ya, xb)),
        "ridge_one_hot": r2_np(yb, ridge_fit_predict(np.hstack([xa, _one_hot(da, n)]), ya,
                                                     np.hstack([xb, _one_hot(db, n)]))),
        "ridge_meta": r2_np(yb, ridge_fit_predict(np.hstack([xa, ma]), ya, np.hstack([xb, mb]))),
    }
    s = _slope_index(enc, slope)
    out["mixed_effects"] = r2_np(yb, mixedlm_fit_predict(xa, ma, da, ya, xb, mb, db, seen=True, slope=s))
    return out


def unseen_references(folds: Sequence[tuple[Sequence[DatasetTable], Sequence[DatasetTable]]],
                      slope: str | None = None) -> dict[str, float]:
    """R² on whole datasets held out of training (predictions pooled over the folds)."""
    ys, preds = [], {"ridge_pooled": [], "ridge_meta": [], "mixed_effects": []}
    for train, test in folds:
        enc = FleetEncoder.fit(train)
        xa, ma, da, ya = _design(enc, train)
        xb, mb, db, yb = _design(enc, test)
        ys.append(yb)
        preds["ridge_pooled"].append(ridge_fit_predict(xa, ya, xb))
        preds["ridge_meta"].append(ridge_fit_predict(np.hstack([xa, ma]), ya, np.hstack([xb, mb])))
        preds["mixed_effects"].append(
            mixedlm_fit_predict(xa, ma, da, ya, xb, mb, db, seen=False, slope=_slope_index(enc, slope)))
    y = np.concatenate(ys)
    return {k: r2_np(y, np.concatenate(v)) for k, v in preds.items()}


def _slope_index(enc: FleetEncoder, slope: str | None) -> int:
    return enc.features.index(slope) if slope in enc.features else 0


def mixedlm_fit_predict(xa, ma, da, ya, xb, mb, db, seen: bool, slope: int = 0) -> np.ndarray:
    """Random intercept and random slope on feature `slope` per dataset, fixed effects for
    features and meta-features (statsmodels MixedLM). Unseen datasets get the fixed effects only."""
    import statsmodels.api as sm

    fixed_a = sm.add_constant(np.hstack([xa, ma]), has_constant="add")
    keep = _independent_columns(fixed_a)  # one-hot groups plus the constant are collinear
    fixed_a, fixed_b = fixed_a[:, keep], sm.add_constant(np.hstack([xb, mb]), has_constant="add")[:, keep]
    exog_re = np.column_stack([np.ones(len(xa)), xa[:, slope]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sm.MixedLM(ya, fixed_a, groups=da, exog_re=exog_re).fit(reml=True)
    pred = fixed_b @ np.asarray(result.fe_params)
    if seen:
        re = result.random_effects  # dataset index -> (intercept, slope) deviations
        effects = np.array([np.asarray(re[d]) if d in re else np.zeros(2) for d in db])
        pred = pred + effects[:, 0] + effects[:, 1] * xb[:, slope]
    return pred


def _independent_columns(x: np.ndarray) -> list[int]:
    keep: list[int] = []
    for j in range(x.shape[1]):
        if np.linalg.matrix_rank(x[:, keep + [j]]) == len(keep) + 1:
            keep.append(j)
    return keep


def r2_np(y: np.ndarray, pred: np.ndarray) -> float:
    import torch

    return r2(torch.as_tensor(y), torch.as_tensor(pred))
