"""Task metrics, overall and per dataset."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def r2(y: Tensor, pred: Tensor) -> float:
    """Coefficient of determination over the given rows (1 - SSE / SST around their own mean)."""
    y, pred = y.double(), pred.double()
    sst = (y - y.mean()).pow(2).sum()
    return float(1 - (y - pred).pow(2).sum() / sst) if sst > 0 else float("nan")


def accuracy(y: Tensor, pred: Tensor) -> float:
    return float((y == pred).double().mean())


@dataclass
class Evaluation:
    metric: str                     # "r2" or "accuracy"
    overall: float                  # over all rows of all datasets together
    per_dataset: dict[str, float]   # the same metric within each dataset
    n_rows: int

    @property
    def mean_per_dataset(self) -> float:
        vals = [v for v in self.per_dataset.values() if v == v]  # skip NaN (a dataset with constant target)
        return sum(vals) / len(vals) if vals else float("nan")

    def to_dict(self) -> dict:
        return {"metric": self.metric, "overall": self.overall, "mean_per_dataset": self.mean_per_dataset,
                "per_dataset": self.per_dataset, "n_rows": self.n_rows}


def score(task: str, y: Tensor, out: Tensor, dataset: Tensor, names: list[str]) -> Evaluation:
    """out: (N, out_dim) model outputs; regression uses column 0, classification the argmax."""
    if task == "regression":
        fn, metric, pred = r2, "r2", out[:, 0]
    else:
        fn, metric, pred = accuracy, "accuracy", out.argmax(-1)
    per = {}
    for d, name in enumerate(names):
        sel = dataset == d
        per[name] = fn(y[sel], pred[sel]) if sel.any() else float("nan")
    return Evaluation(metric, fn(y, pred), per, int(y.shape[0]))
