"""What the retraining flow computes: train every model on the fleet, score it, compare with the champion.

- seen: 25 % of each dataset's rows held out (the same rows every retraining: the split depends only
  on the dataset), every model trained on the rest; the hypernetwork trained here is the version
  that gets registered, so its logged metrics are its own.
- unseen: k-fold over whole datasets, zero-shot, plus the few-shot curve.
- champion: the current champion scored on the same held-out rows (datasets it never saw: zero-shot).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from flows import experiment
from flows.report import verdict
from flows.settings import Settings
from hypernet_core import DatasetTable, FleetEncoder, ModelConfig, TrainConfig, holdout_tables, predict
from hypernet_core.metrics import score
from hypernet_core.model import FleetModel


@dataclass
class FleetEvaluation:
    report: dict                      # comparison table: models -> seen/unseen/params/seconds, few-shot, verdict
    model: FleetModel                 # the trained hypernetwork: the version to register
    encoder: FleetEncoder
    model_config: ModelConfig
    test: list[DatasetTable]          # held-out rows of every dataset, for the champion comparison
    train_fleet: object = field(repr=False, default=None)  # encoded training rows, for interference

    def seen(self, kind: str = "hypernetwork") -> float:
        return self.report["models"][kind]["seen"]

    def per_dataset(self, kind: str = "hypernetwork") -> dict[str, float]:
        return self.report["models"][kind]["per_dataset_seen"]


def configs(settings: Settings, progress: bool = False, max_steps: int | None = None) -> tuple[ModelConfig, TrainConfig]:
    r = settings.retrain
    tcfg = TrainConfig(max_steps=max_steps or r.max_steps, accumulate=r.accumulate, eval_every=r.eval_every,
                       patience=r.patience, seed=settings.seed, device=settings.resolve_device(), progress=progress)
    return ModelConfig(hidden=tuple(r.hidden), embed_dropout=r.embed_dropout), tcfg


def train_and_evaluate(settings: Settings, tables: Sequence[DatasetTable], task: str = "regression",
                       max_steps: int | None = None, progress: bool = False) -> FleetEvaluation:
    """The hypernetwork and the baselines on identical splits and budget."""
    r = settings.retrain
    mcfg, tcfg = configs(settings, progress, max_steps)
    kinds = ("hypernetwork", *r.baselines)
    unseen_kinds = [k for k in kinds if k != "per_dataset"] if r.unseen_folds > 1 else []
    seen, unseen = experiment.run_protocol(tables, kinds, unseen_kinds, mcfg, tcfg, task=task, holdout=r.holdout,
                                           folds=r.unseen_folds, shots=r.shots if unseen_kinds else (),
                                           workers=r.workers or os.cpu_count() or 1)
    models = experiment.table_rows(seen, unseen)
    report = {"metric": "r2" if task == "regression" else "accuracy", "n_datasets": len(tables),
              "n_rows": sum(t.n_rows for t in tables), "models": models,
              "protocol": {"seen": f"{r.holdout:.0%} of each dataset's rows held out",
                           "unseen": f"{r.unseen_folds}-fold over whole datasets, zero-shot" if unseen_kinds else None,
                           "seed": settings.seed},
              "model_config": mcfg.to_dict(), "train_config": tcfg.to_dict(),
              "few_shot": unseen["hypernetwork"].few_shot if "hypernetwork" in unseen else {}}
    report["verdict"] = verdict(report)
    hyper = seen["hypernetwork"]
    _, test = holdout_tables(tables, r.holdout, seed=settings.seed)
    return FleetEvaluation(report, hyper.model, hyper.encoder, mcfg, test, hyper.train_fleet)


def score_model(model: FleetModel, enc: FleetEncoder, tables: Sequence[DatasetTable]) -> tuple[float, dict[str, float]]:
    """Overall and per-dataset metric of a saved model on `tables`: datasets it knows use their learned
    embedding, the others are zero-shot; features it was not trained with are left out."""
    fleet = enc.transform([t.with_features(enc.features) for t in tables])
    with torch.no_grad():
        out = predict(model, fleet).cpu()
    ev = score(enc.task, fleet.y, out, fleet.dataset, fleet.names)
    return ev.overall, {k: v for k, v in ev.per_dataset.items() if np.isfinite(v)}
