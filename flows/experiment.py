"""The evaluation protocol shared by `hypernet demo` and `hypernet train`.

- seen: hold out a share of every dataset's rows, train on the rest, score the held-out rows.
- unseen: k-fold over whole datasets; train on k-1 folds, score the held-out datasets zero-shot
  (meta-features only), pool predictions over folds and score once.
Every model gets the same splits, the same configuration and the same training budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from hypernet_core import (DatasetTable, FleetEncoder, ModelConfig, TrainConfig, build_model, fit,
                           holdout_tables, kfold_datasets, predict)
from hypernet_core.metrics import score

KINDS = ("hypernetwork", "pooled", "per_dataset", "task_conditioned")


@dataclass
class ModelResult:
    kind: str
    seen: float | None = None
    unseen: float | None = None
    params: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0
    per_dataset: dict[str, float] = field(default_factory=dict)
    few_shot: dict = field(default_factory=dict)
    model: object = field(default=None, repr=False)    # the trained model (seen protocol), for figures
    train_fleet: object = field(default=None, repr=False)


def train_one(kind: str, tables: Sequence[DatasetTable], enc: FleetEncoder, mcfg: ModelConfig, tcfg: TrainConfig):
    model = build_model(kind, mcfg, enc.n_features, enc.meta_dim, enc.out_dim, len(tables), seed=tcfg.seed)
    result = fit(model, enc.transform(tables).to(tcfg.device), tcfg, label=kind)
    return model, result


def run_seen(tables: Sequence[DatasetTable], kinds: Sequence[str], mcfg: ModelConfig, tcfg: TrainConfig,
             task: str = "regression", holdout: float = 0.25) -> dict[str, ModelResult]:
    train, test = holdout_tables(tables, holdout, seed=tcfg.seed)
    enc = FleetEncoder.fit(train, task=task)
    test_fleet = enc.transform(test).to(tcfg.device)
    results = {}
    train_fleet = enc.transform(train).to(tcfg.device)
    for kind in kinds:
        model, res = train_one(kind, train, enc, mcfg, tcfg)
        ev = score(task, test_fleet.y.cpu(), predict(model, test_fleet).cpu(), test_fleet.dataset.cpu(), test_fleet.names)
        results[kind] = ModelResult(kind, seen=ev.overall, params=model.parameter_counts(), seconds=res.seconds,
                                    steps=res.steps, per_dataset=ev.per_dataset, model=model, train_fleet=train_fleet)
    return results


def dataset_folds(tables: Sequence[DatasetTable], k: int, seed: int) -> list[tuple[list[DatasetTable], list[DatasetTable]]]:
    folds = []
    for held in kfold_datasets(len(tables), k, seed):
        held_set = set(held)
        folds.append(([t for i, t in enumerate(tables) if i not in held_set], [tables[i] for i in held]))
    return folds


def run_unseen(tables: Sequence[DatasetTable], kinds: Sequence[str], mcfg: ModelConfig, tcfg: TrainConfig,
               task: str = "regression", k: int = 5, shots: Sequence[int] = ()) -> dict[str, ModelResult]:
    """Zero-shot on held-out datasets; with `shots`, also the hypernetwork's few-shot curve."""
    results: dict[str, ModelResult] = {}
    ys: list[torch.Tensor] = []
    outs: dict[str, list[torch.Tensor]] = {kind: [] for kind in kinds}
    curve = FewShotCurve(task, shots, tcfg.seed)
    for train, test in dataset_folds(tables, k, tcfg.seed):
        enc = FleetEncoder.fit(train, task=task)
        test_fleet = enc.transform(test, known=False).to(tcfg.device)
        ys.append(test_fleet.y.cpu())
        for kind in kinds:
            model, res = train_one(kind, train, enc, mcfg, tcfg)
            outs[kind].append(predict(model, test_fleet).cpu())
            if kind == "hypernetwork" and shots:
                curve.add_fold(model, enc, test, tcfg.device)
            r = results.setdefault(kind, ModelResult(kind))
            r.seconds += res.seconds
            r.steps += res.steps
    y = torch.cat(ys)
    for kind in kinds:
        zeros = torch.zeros(len(y), dtype=torch.long)
        results[kind].unseen = score(task, y, torch.cat(outs[kind]), zeros, ["all"]).overall
    if shots and "hypernetwork" in results:
        results["hypernetwork"].few_shot = curve.result()
    return results


class FewShotCurve:
    """Zero-shot vs k-shot quality on the same query rows: for each held-out dataset with more than
    max(k) rows, the first max(k) rows (in a seeded random order) are the pool the k support rows
    come from, and the remaining rows are the query set for every k."""

    def __init__(self, task: str, shots: Sequence[int], seed: int):
        self.task, self.shots, self.seed = task, sorted(shots), seed
        self.y: list[torch.Tensor] = []
        self.preds: dict[int, list[torch.Tensor]] = {k: [] for k in [0, *self.shots]}
        self.kept_zero_shot: dict[int, list[bool]] = {k: [] for k in self.shots}
        self.seconds: dict[int, float] = {k: 0.0 for k in self.shots}
        self.n_datasets = 0

    def add_fold(self, model, enc: FleetEncoder, test: Sequence[DatasetTable], device: str) -> None:
        from hypernet_core.adapt import adapt, zero_shot_embeddings
        from hypernet_core.fleet import DatasetTable as T

        pool = max(self.shots)
        rng = np.random.default_rng(self.seed)
        support, query = [], []
        for t in test:
            if t.n_rows <= pool + 1:
                continue
            order = rng.permutation(t.n_rows)
            take = lambda idx: T(t.name, {f: np.asarray(v)[idx] for f, v in t.features.items()},  # noqa: E731
                                 np.asarray(t.target)[idx], t.meta)
            support.append((take(order[:pool])))
            query.append(take(order[pool:]))
        if not query:
            return
        self.n_datasets += len(query)
        q = enc.transform(query, known=False).to(device)
        self.y.append(q.y.cpu())
        self.preds[0].append(predict(model, q, zero_shot_embeddings(model, q.n_datasets)).cpu())
        for k in self.shots:
            s = enc.transform([T(t.name, {f: v[:k] for f, v in t.features.items()}, t.target[:k], t.meta)
                               for t in support], known=False).to(device)
            start = time.perf_counter()
            a = adapt(model, s, seed=self.seed)
            self.seconds[k] += time.perf_counter() - start
            self.preds[k].append(predict(model, q, a.emb).cpu())
            self.kept_zero_shot[k] += [not used for used in a.few_shot]

    def result(self) -> dict:
        if not self.y:
            return {}
        y = torch.cat(self.y)
        zeros = torch.zeros(len(y), dtype=torch.long)
        out = {"n_datasets": self.n_datasets, "query_rows": int(len(y))}
        for k, preds in self.preds.items():
            entry = {"metric": score(self.task, y, torch.cat(preds), zeros, ["all"]).overall}
            if k:
                entry["kept_zero_shot_share"] = float(np.mean(self.kept_zero_shot[k]))
                entry["adapt_seconds_per_dataset"] = self.seconds[k] / max(1, self.n_datasets)
            out[str(k)] = entry
        return out


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
