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
    for kind in kinds:
        model, res = train_one(kind, train, enc, mcfg, tcfg)
        ev = score(task, test_fleet.y.cpu(), predict(model, test_fleet).cpu(), test_fleet.dataset.cpu(), test_fleet.names)
        results[kind] = ModelResult(kind, seen=ev.overall, params=model.parameter_counts(), seconds=res.seconds,
                                    steps=res.steps, per_dataset=ev.per_dataset)
    return results


def dataset_folds(tables: Sequence[DatasetTable], k: int, seed: int) -> list[tuple[list[DatasetTable], list[DatasetTable]]]:
    folds = []
    for held in kfold_datasets(len(tables), k, seed):
        held_set = set(held)
        folds.append(([t for i, t in enumerate(tables) if i not in held_set], [tables[i] for i in held]))
    return folds


def run_unseen(tables: Sequence[DatasetTable], kinds: Sequence[str], mcfg: ModelConfig, tcfg: TrainConfig,
               task: str = "regression", k: int = 5) -> dict[str, ModelResult]:
    results: dict[str, ModelResult] = {}
    ys: list[torch.Tensor] = []
    outs: dict[str, list[torch.Tensor]] = {kind: [] for kind in kinds}
    for train, test in dataset_folds(tables, k, tcfg.seed):
        enc = FleetEncoder.fit(train, task=task)
        test_fleet = enc.transform(test, known=False).to(tcfg.device)
        ys.append(test_fleet.y.cpu())
        for kind in kinds:
            model, res = train_one(kind, train, enc, mcfg, tcfg)
            outs[kind].append(predict(model, test_fleet).cpu())
            r = results.setdefault(kind, ModelResult(kind))
            r.seconds += res.seconds
            r.steps += res.steps
    y = torch.cat(ys)
    for kind in kinds:
        zeros = torch.zeros(len(y), dtype=torch.long)
        results[kind].unseen = score(task, y, torch.cat(outs[kind]), zeros, ["all"]).overall
    return results


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
