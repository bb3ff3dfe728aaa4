"""A fleet in memory: many datasets, one canonical feature space, per-dataset meta-features.

`DatasetTable` is what a caller hands in (numpy arrays keyed by canonical feature name).
`FleetEncoder` learns, from the training datasets only, the canonical feature order, feature and
target scalers, class labels and the meta-feature encoding; it turns tables into a `Fleet` of tensors.
The encoder is JSON-serialisable so that generated weights can be used without the training data.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace
from typing import Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from hypernet_core.errors import FleetError

Scalar = float | int | bool | str
UNKNOWN = -1  # embedding id of a dataset the model has never seen


@dataclass
class DatasetTable:
    """One dataset: canonical feature name -> values, a target, and its meta-features."""

    name: str
    features: dict[str, np.ndarray]
    target: np.ndarray
    meta: dict[str, Scalar] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return len(self.target)

    def rows(self, idx) -> "DatasetTable":
        """The same dataset restricted to some rows (an index array, a boolean mask or a slice)."""
        return DatasetTable(self.name, {f: np.asarray(v)[idx] for f, v in self.features.items()},
                            np.asarray(self.target)[idx], dict(self.meta))

    def with_features(self, keep: Sequence[str]) -> "DatasetTable":
        """The same rows with only the features in `keep` (a model sees the others as missing)."""
        return DatasetTable(self.name, {f: v for f, v in self.features.items() if f in keep}, self.target, self.meta)


@dataclass
class Fleet:
    """Tensors for a set of datasets. Row i belongs to dataset `dataset[i]` (index into `names`)."""

    x: Tensor         # (N, F) float32, missing values filled with 0
    mask: Tensor      # (N, F) float32, 1 where the value was observed
    y: Tensor         # (N,) float32 (standardised regression target) or int64 (class index)
    dataset: Tensor   # (N,) int64 in [0, D)
    meta: Tensor      # (D, M) float32 encoded meta-features
    emb_ids: Tensor   # (D,) int64 embedding row of each dataset in the model; UNKNOWN if unseen
    names: list[str]
    task: Literal["regression", "classification"]

    @property
    def n_datasets(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return self.y.shape[0]

    def to(self, device: str | torch.device) -> "Fleet":
        move = lambda t: t.to(device)  # noqa: E731
        return replace(self, x=move(self.x), mask=move(self.mask), y=move(self.y),
                       dataset=move(self.dataset), meta=move(self.meta), emb_ids=move(self.emb_ids))

    def rows(self, idx: Tensor) -> "Fleet":
        """The same datasets, only the given rows."""
        return replace(self, x=self.x[idx], mask=self.mask[idx], y=self.y[idx], dataset=self.dataset[idx])

    def datasets(self, keep: Sequence[int]) -> "Fleet":
        """Only the given datasets, re-indexed 0..len(keep)-1 in the given order."""
        keep_t = torch.as_tensor(list(keep), dtype=torch.long, device=self.dataset.device)
        remap = torch.full((self.n_datasets,), -1, dtype=torch.long, device=self.dataset.device)
        remap[keep_t] = torch.arange(len(keep_t), device=self.dataset.device)
        row_idx = torch.nonzero(remap[self.dataset] >= 0).squeeze(1)
        sub = self.rows(row_idx)
        return replace(sub, dataset=remap[sub.dataset], meta=self.meta[keep_t],
                       emb_ids=self.emb_ids[keep_t], names=[self.names[i] for i in keep])

    def as_unseen(self) -> "Fleet":
        """The same data presented as datasets the model has never seen (zero-shot)."""
        return replace(self, emb_ids=torch.full_like(self.emb_ids, UNKNOWN))


class _Standardiser:
    """Mean/std per column, ignoring NaN; a constant column keeps std 1 to avoid dividing by 0."""

    def __init__(self, mean: list[float], std: list[float]):
        self.mean, self.std = np.asarray(mean, np.float64), np.asarray(std, np.float64)

    @classmethod
    def fit(cls, values: np.ndarray) -> "_Standardiser":
        with np.errstate(all="ignore"):
            mean = np.nan_to_num(np.nanmean(values, axis=0), nan=0.0)
            std = np.nan_to_num(np.nanstd(values, axis=0), nan=1.0)
        return cls(mean.tolist(), np.where(std > 1e-12, std, 1.0).tolist())

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std


@dataclass
class FleetEncoder:
    """Everything needed to turn raw tables into model inputs, learned on the training datasets."""

    task: Literal["regression", "classification"]
    features: list[str]
    feature_mean: list[float]
    feature_std: list[float]
    target_mean: float = 0.0
    target_std: float = 1.0
    classes: list[Scalar] = field(default_factory=list)
    numeric_meta: list[str] = field(default_factory=list)
    meta_mean: list[float] = field(default_factory=list)
    meta_std: list[float] = field(default_factory=list)
    categorical_meta: dict[str, list[str]] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)  # names whose embeddings the model learns
    min_rows: int = 2

    # ---- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit(cls, tables: Sequence[DatasetTable], task: Literal["regression", "classification"] = "regression",
            min_rows: int = 2) -> "FleetEncoder":
        if not tables:
            raise FleetError("<fleet>", "datasets", "no dataset was given", "pass at least one DatasetTable")
        if task not in ("regression", "classification"):
            raise FleetError("<fleet>", "task", f"unknown task type {task!r}", "use 'regression' or 'classification'")
        for t in tables:
            _check_table(t, task, min_rows)
        _check_unique_names(tables)
        features = sorted({f for t in tables for f in t.features})
        x = np.concatenate([_feature_matrix(t, features) for t in tables])
        fs = _Standardiser.fit(x)
        enc = cls(task=task, features=features, feature_mean=fs.mean.tolist(), feature_std=fs.std.tolist(),
                  datasets=[t.name for t in tables], min_rows=min_rows)
        y = np.concatenate([t.target for t in tables])
        if task == "regression":
            enc.target_mean, enc.target_std = float(y.mean()), float(y.std() or 1.0)
        else:
            enc.classes = sorted({_py(v) for v in y}, key=str)
        enc._fit_meta(tables)
        return enc

    def _fit_meta(self, tables: Sequence[DatasetTable]) -> None:
        keys = sorted({k for t in tables for k in t.meta})
        for k in keys:
            values = [t.meta.get(k) for t in tables]
            if all(v is None or _is_number(v) for v in values):
                self.numeric_meta.append(k)
            else:
                self.categorical_meta[k] = sorted({str(v) for v in values if v is not None})
        if self.numeric_meta:
            ms = _Standardiser.fit(np.array([[_num(t.meta.get(k)) for k in self.numeric_meta] for t in tables]))
            self.meta_mean, self.meta_std = ms.mean.tolist(), ms.std.tolist()

    # ---- encoding ------------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def meta_dim(self) -> int:
        return len(self.numeric_meta) + sum(len(v) for v in self.categorical_meta.values())

    @property
    def out_dim(self) -> int:
        return 1 if self.task == "regression" else len(self.classes)

    def encode_meta(self, name: str, meta: dict[str, Scalar]) -> np.ndarray:
        """Numeric: standardised (missing -> mean, i.e. 0). Categorical: one-hot (unseen value -> all 0)."""
        parts = []
        if self.numeric_meta:
            raw = np.array([_meta_number(name, k, meta.get(k)) for k in self.numeric_meta])
            parts.append(np.nan_to_num(_Standardiser(self.meta_mean, self.meta_std)(raw), nan=0.0))
        for k, cats in self.categorical_meta.items():
            v = meta.get(k)
            parts.append(np.array([1.0 if v is not None and str(v) == c else 0.0 for c in cats]))
        return np.concatenate(parts) if parts else np.zeros(0)

    def transform(self, tables: Sequence[DatasetTable], known: bool | None = None) -> Fleet:
        """Tables -> Fleet. `known=None` looks each name up among the training datasets."""
        if not tables:
            raise FleetError("<fleet>", "datasets", "no dataset was given", "pass at least one DatasetTable")
        _check_unique_names(tables)
        xs, ms, ys, ds, metas, emb = [], [], [], [], [], []
        for i, t in enumerate(tables):
            _check_table(t, self.task, self.min_rows)
            unknown = sorted(set(t.features) - set(self.features))
            if unknown:
                raise FleetError(t.name, unknown[0], "this feature was not in the training fleet",
                                 f"drop it or map it to one of the canonical features {self.features}")
            raw = _feature_matrix(t, self.features)
            mask = ~np.isnan(raw)
            xs.append(np.where(mask, _Standardiser(self.feature_mean, self.feature_std)(raw), 0.0))
            ms.append(mask)
            ys.append(self._encode_target(t))
            ds.append(np.full(t.n_rows, i))
            metas.append(self.encode_meta(t.name, t.meta))
            emb.append(self._embedding_id(t.name, known))
        return Fleet(
            x=torch.tensor(np.concatenate(xs), dtype=torch.float32),
            mask=torch.tensor(np.concatenate(ms), dtype=torch.float32),
            y=torch.tensor(np.concatenate(ys), dtype=torch.float32 if self.task == "regression" else torch.long),
            dataset=torch.tensor(np.concatenate(ds), dtype=torch.long),
            meta=torch.tensor(np.stack(metas), dtype=torch.float32).reshape(len(tables), self.meta_dim),
            emb_ids=torch.tensor(emb, dtype=torch.long),
            names=[t.name for t in tables],
            task=self.task,
        )

    def _embedding_id(self, name: str, known: bool | None) -> int:
        if known is False:
            return UNKNOWN
        if name in self.datasets:
            return self.datasets.index(name)
        if known:
            raise FleetError(name, "name", "this dataset is not one the model was trained on",
                             f"use one of the {len(self.datasets)} training datasets, or pass known=False (zero-shot)")
        return UNKNOWN

    def _encode_target(self, t: DatasetTable) -> np.ndarray:
        if self.task == "regression":
            return (t.target.astype(np.float64) - self.target_mean) / self.target_std
        lookup = {c: i for i, c in enumerate(self.classes)}
        bad = [v for v in t.target if _py(v) not in lookup]
        if bad:
            raise FleetError(t.name, "target", f"class {bad[0]!r} was not seen in training (classes {self.classes})",
                             "retrain with this class present, or remove those rows")
        return np.array([lookup[_py(v)] for v in t.target])

    def decode_target(self, y_std: np.ndarray) -> np.ndarray:
        """Standardised regression predictions back to the target's own units."""
        return y_std * self.target_std + self.target_mean

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict) -> "FleetEncoder":
        return cls(**d)


# ---- input checks --------------------------------------------------------------------------------
def _check_unique_names(tables: Sequence[DatasetTable]) -> None:
    seen: set[str] = set()
    for t in tables:
        if t.name in seen:
            raise FleetError(t.name, "name", "two datasets share this name", "give every dataset a unique name")
        seen.add(t.name)


def _check_table(t: DatasetTable, task: str, min_rows: int) -> None:
    n = len(t.target)
    if n < min_rows:
        raise FleetError(t.name, "rows", f"only {n} rows, fewer than the {min_rows} needed",
                         "collect more rows or leave this dataset out of the fleet")
    if not t.features:
        raise FleetError(t.name, "features", "no feature columns", "map at least one column to a canonical feature")
    for f, v in t.features.items():
        v = np.asarray(v)
        if v.shape != (n,):
            raise FleetError(t.name, f, f"has shape {v.shape} but the target has {n} rows",
                             "give every feature one value per row of the target")
        if not np.issubdtype(v.dtype, np.number) and v.dtype != bool:
            raise FleetError(t.name, f, f"is not numeric (dtype {v.dtype})", "encode it as numbers before training")
        if np.isinf(v.astype(np.float64)).any():
            raise FleetError(t.name, f, f"{int(np.isinf(v.astype(float)).sum())} infinite values (NaN would be "
                             "masked as missing, infinity cannot)", "replace them with NaN or a finite value")
    _check_target(t, task)


def _check_target(t: DatasetTable, task: str) -> None:
    y = np.asarray(t.target)
    if task == "regression":
        if not np.issubdtype(y.dtype, np.number) or y.dtype == bool:
            raise FleetError(t.name, "target", f"a regression target must be numeric, got dtype {y.dtype}",
                             "use task type 'classification' or convert the target to numbers")
        bad = ~np.isfinite(y.astype(np.float64))
        if bad.any():
            raise FleetError(t.name, "target", f"{int(bad.sum())} NaN or infinite target values (a target "
                             "cannot be masked)", "drop those rows or fill the target")
    else:
        if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
            raise FleetError(t.name, "target", "a classification target must hold class labels, got non-integer "
                             "floats", "use task type 'regression' or convert the target to labels")
        if y.dtype == object and any(v is None or (isinstance(v, float) and math.isnan(v)) for v in y):
            raise FleetError(t.name, "target", "missing class labels", "drop those rows or fill the target")


def _feature_matrix(t: DatasetTable, features: list[str]) -> np.ndarray:
    cols = [np.asarray(t.features[f], np.float64) if f in t.features else np.full(t.n_rows, np.nan) for f in features]
    return np.stack(cols, axis=1)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _num(v: object) -> float:
    return float(v) if v is not None else float("nan")


def _meta_number(dataset: str, key: str, v: object) -> float:
    if v is None:
        return float("nan")
    if not _is_number(v):
        raise FleetError(dataset, f"meta.{key}", f"expected a number, got {v!r}", "give a numeric value or leave it out")
    if math.isinf(float(v)):
        raise FleetError(dataset, f"meta.{key}", "infinite meta-feature value", "give a finite value or leave it out")
    return float(v)


def _py(v: object) -> Scalar:
    return v.item() if isinstance(v, np.generic) else v  # numpy scalars -> plain Python for JSON


# ---- splits ------------------------------------------------------------------------------------
def split_rows(fleet: Fleet, frac: float, seed: int = 0) -> tuple[Fleet, Fleet]:
    """Hold out `frac` of each dataset's rows (at least one row stays on each side)."""
    g = torch.Generator().manual_seed(seed)
    held = torch.zeros(len(fleet), dtype=torch.bool)
    for d in range(fleet.n_datasets):
        idx = torch.nonzero(fleet.dataset.cpu() == d).squeeze(1)
        k = min(max(1, round(frac * len(idx))), len(idx) - 1)
        held[idx[torch.randperm(len(idx), generator=g)[:k]]] = True
    held = held.to(fleet.dataset.device)
    return fleet.rows(torch.nonzero(~held).squeeze(1)), fleet.rows(torch.nonzero(held).squeeze(1))


def kfold_datasets(n_datasets: int, k: int = 5, seed: int = 0) -> list[list[int]]:
    """Whole datasets in k folds (for evaluating on datasets the model has never seen)."""
    perm = torch.randperm(n_datasets, generator=torch.Generator().manual_seed(seed)).tolist()
    return [sorted(perm[i::k]) for i in range(k)]


def holdout_tables(tables: Sequence[DatasetTable], frac: float, seed: int = 0) -> tuple[list[DatasetTable], list[DatasetTable]]:
    """Hold out `frac` of each dataset's rows at random, before any encoding (so scalers never see them).

    Each dataset's split depends only on its name, its row count and the seed, never on the rest of
    the fleet: a dataset keeps the same held-out rows across retrainings, so two model versions are
    compared on rows neither of them trained on."""
    train, test = [], []
    for t in tables:
        n = t.n_rows
        k = min(max(1, round(frac * n)), n - 1)
        rng = np.random.default_rng([seed, zlib.crc32(t.name.encode())])
        held = np.zeros(n, dtype=bool)
        held[rng.permutation(n)[:k]] = True
        train.append(t.rows(~held))
        test.append(t.rows(held))
    return train, test
