"""Transfer between datasets and between model versions.

- GEM metrics (Lopez-Paz & Ranzato, 2017) from an accuracy matrix R, where R[i, j] is the quality
  on stage j's test data after training on stages 0..i in order: ACC (where we end up), BWT (what
  later stages did to earlier ones; negative = forgetting) and FWT (what earlier stages did for a
  stage not yet trained on, against an untrained model).
- `sequential_protocol` runs that experiment on a fleet: one model, trained stage by stage.
- `version_backward_transfer`: the same question across releases: on the datasets both versions
  know, is the new model better or worse than the one it replaces?
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from hypernet_core.config import TrainConfig
from hypernet_core.fleet import Fleet
from hypernet_core.metrics import Evaluation
from hypernet_core.model import FleetModel
from hypernet_core.train import evaluate, fit


# ---- GEM metrics ------------------------------------------------------------------------------------
def gem_metrics(R, baseline=None, metric: str = "metric") -> dict:
    """ACC, BWT and FWT of a T×T matrix R exactly as in GEM (0-indexed here):

        ACC = 1/T     Σ_j          R[T-1, j]
        BWT = 1/(T-1) Σ_{j<T-1}    R[T-1, j] - R[j, j]
        FWT = 1/(T-1) Σ_{j>=1}     R[j-1, j] - b[j]

    `baseline` b (T,) is the metric of the model before any training (random initialisation) on
    each stage; without it FWT is NaN. With T = 1 there is nothing before or after: BWT and FWT are NaN.
    Entries are used as given, in the metric's own units (no division by R[j, j] or b[j])."""
    r = np.asarray(R, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
        raise ValueError(f"R must be a non-empty square T×T matrix, got shape {r.shape}")
    t = r.shape[0]
    acc = float(r[-1].mean())
    bwt = float(np.mean(r[-1, :-1] - np.diag(r)[:-1])) if t > 1 else math.nan
    fwt = math.nan
    if baseline is not None:
        b = np.asarray(baseline, dtype=np.float64)
        if b.shape != (t,):
            raise ValueError(f"baseline must hold one value per stage ({t}), got shape {b.shape}")
        fwt = float(np.mean(np.diag(r, k=1) - b[1:])) if t > 1 else math.nan
    return {"ACC": acc, "BWT": bwt, "FWT": fwt, "T": t, "normalisation": _normalisation(metric, t)}


def _normalisation(metric: str, t: int) -> str:
    return (f"R[i, j] = {metric} on stage j after training stages 0..i, in the metric's own units "
            f"(R² is 1 - SSE/SST within each dataset, so stages with different target scales are comparable; "
            f"accuracy is a share of rows). ACC: mean of the last row over T={t} stages. BWT: mean of "
            f"R[T-1, j] - R[j, j] over the T-1={t - 1} earlier stages. FWT: mean of R[j-1, j] - b[j] over "
            f"stages 1..T-1, b = the untrained (random-init) model. Differences are not divided by anything.")


# ---- sequential protocol ----------------------------------------------------------------------------
@dataclass
class SequentialResult:
    R: torch.Tensor                 # (T, T) float64: R[i, j] = quality on stage j's test rows after stage i
    baseline: torch.Tensor          # (T,) the same quality of the untrained model (GEM's b, for FWT)
    stages: list[list[str]]         # dataset names of each stage
    metric: str                     # "r2" or "accuracy"
    seconds: float

    def gem(self) -> dict:
        return gem_metrics(self.R, self.baseline, self.metric)

    def to_dict(self) -> dict:
        return {"R": self.R.tolist(), "baseline": self.baseline.tolist(), "stages": self.stages,
                "metric": self.metric, "seconds": self.seconds, **self.gem()}


def sequential_protocol(make_model: Callable[[], FleetModel], stages: Sequence[Sequence[int]], train_fleet: Fleet,
                        test_fleet: Fleet, train_cfg: TrainConfig) -> SequentialResult:
    """Train ONE model on the stages in order (each stage: `fit` on that stage's datasets only, a
    fresh optimiser, no replay) and after each stage score it on every stage's test rows.

    `stages` holds dataset indices, valid in both fleets (they must list the same datasets in the
    same order). Stage-level entries: the mean over the stage's datasets of the per-dataset metric
    (R² for regression, accuracy for classification), so every dataset counts the same."""
    if list(train_fleet.names) != list(test_fleet.names):
        raise ValueError("train_fleet and test_fleet must list the same datasets in the same order")
    if not stages or any(len(s) == 0 for s in stages):
        raise ValueError("give at least one stage, each with at least one dataset index")
    start = time.perf_counter()
    model = make_model().to(train_cfg.device)  # `fit` trains on this device; score there too
    test_parts = [test_fleet.datasets(list(s)).to(train_cfg.device) for s in stages]
    baseline, metric = _score_stages(model, test_parts)                                   # (T,)
    rows = []
    for i, stage in enumerate(stages):
        fit(model, train_fleet.datasets(list(stage)), train_cfg, label=f"stage {i + 1}/{len(stages)}")
        rows.append(_score_stages(model, test_parts)[0])
    return SequentialResult(torch.stack(rows), baseline, [[train_fleet.names[d] for d in s] for s in stages],
                            metric, time.perf_counter() - start)


def _score_stages(model: FleetModel, parts: list[Fleet]) -> tuple[torch.Tensor, str]:
    evals = [evaluate(model, part) for part in parts]
    return torch.tensor([e.mean_per_dataset for e in evals], dtype=torch.float64), evals[0].metric


# ---- version-to-version backward transfer -----------------------------------------------------------
def version_backward_transfer(new_eval: Evaluation, old_eval: Evaluation, worst: int = 5) -> dict:
    """New model minus previous model, per dataset, over the datasets both evaluations scored.

    Positive mean_delta: the new version is better where the old one was already in service;
    `worst` lists the datasets that lost most (the ones to look at before promoting)."""
    if new_eval.metric != old_eval.metric:
        raise ValueError(f"cannot compare {new_eval.metric} with {old_eval.metric}: evaluate both on the same task")
    common = [n for n in old_eval.per_dataset if n in new_eval.per_dataset
              and _finite(new_eval.per_dataset[n]) and _finite(old_eval.per_dataset[n])]
    deltas = {n: new_eval.per_dataset[n] - old_eval.per_dataset[n] for n in common}
    ranked = sorted(deltas.items(), key=lambda kv: kv[1])
    return {
        "metric": new_eval.metric,
        "n_common": len(common),
        "mean_delta": float(np.mean(list(deltas.values()))) if deltas else math.nan,
        "n_worse": sum(d < 0 for d in deltas.values()),
        "per_dataset": deltas,
        "worst": [(n, d) for n, d in ranked[:worst] if d < 0],
    }


def _finite(v: float) -> bool:
    return v is not None and math.isfinite(v)
