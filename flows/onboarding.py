"""Weights for datasets the champion has never seen: what the onboarding flow calls.

A dataset is a candidate when the catalog lists it, it is not quarantined, it is not among the champion's training datasets
(those are served by the champion itself, by dataset id) and it has no weights from the current
champion yet. Its weights are generated zero-shot from its meta-features, or few-shot when it has
labels: the first `few_shot_rows` rows (seeded order) adapt, the rest measure zero-shot vs few-shot.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from catalog import DatasetRecord, open_catalog_from_settings
from flows import tracking
from flows.fleet_io import table_from_record, trainable
from flows.settings import Settings
from flows.storage import Lake
from hypernet_core import DatasetTable, FleetEncoder
from hypernet_core.export import GeneratedModel, generate
from hypernet_core.metrics import r2
from hypernet_core.model import FleetModel


@dataclass
class Champion:
    version: int
    model: FleetModel = field(repr=False)
    encoder: FleetEncoder = field(repr=False)
    trained_on: frozenset[str] = frozenset()


@dataclass
class Onboarded:
    name: str
    urn: str
    how: str                         # zero-shot | few-shot (k rows) | zero-shot (kept over k rows)
    metrics: dict[str, float]        # zero_shot / few_shot on the rows not used to adapt, when labelled
    location: str = ""               # the weights file in the lake
    file: Path | None = None         # a local copy, for MLflow
    query: dict = field(default_factory=dict, repr=False)  # y, zero_shot, few_shot predictions on held-back rows


def load_champion(settings: Settings) -> Champion | None:
    name = settings.tracking.model_name
    version = tracking.champion_version(name)
    if version is None:
        return None
    model, enc, _ = tracking.load_registered(name, "champion")
    return Champion(version, model, enc, frozenset(enc.datasets))


def candidates(settings: Settings, champion: Champion) -> list[DatasetRecord]:
    with open_catalog_from_settings(settings) as cat:
        waiting = cat.not_onboarded(str(champion.version))
    # Quarantined datasets wait until they are validated again (`hypernet validate`) or re-registered.
    return [r for r in trainable(waiting) if r.name not in champion.trained_on]


@contextlib.contextmanager
def onboarding_lock(settings: Settings, timeout: float = 600):
    """One onboarding at a time per workspace: a second run waits, then finds nothing left to do.
    (Deployments also carry a Prefect concurrency limit of 1; this covers direct runs too.)"""
    from filelock import FileLock

    path = settings.workspace / "locks" / "onboard.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path), timeout=timeout):
        yield


def generate_for(settings: Settings, champion: Champion, record: DatasetRecord) -> tuple[GeneratedModel, dict, dict]:
    """The dataset's weights and, when it has labels, zero-shot vs few-shot on its held-back rows."""
    df = Lake.from_settings(settings).read_table(record.location)
    table = table_from_record(record, df).with_features(champion.encoder.features)
    labelled = _labelled(table)
    if labelled is None:
        return generate(champion.model, champion.encoder, record.name, table.meta, seed=settings.seed), {}, {}
    support, query = _support_query(labelled, settings.onboard.few_shot_rows, settings.seed)
    generated = generate(champion.model, champion.encoder, record.name, table.meta, rows=support, seed=settings.seed)
    if query is None:
        return generated, {}, {}
    zero = generate(champion.model, champion.encoder, record.name, table.meta, seed=settings.seed)
    preds = {"y": np.asarray(query.target), "zero_shot": _predict(zero, query, champion.encoder),
             "few_shot": _predict(generated, query, champion.encoder)}
    metrics = {"zero_shot": _metric(champion.encoder.task, preds["y"], preds["zero_shot"]),
               "few_shot": _metric(champion.encoder.task, preds["y"], preds["few_shot"]),
               "support_rows": float(support.n_rows), "query_rows": float(query.n_rows)}
    return generated, metrics, preds


def summarize(task: str, done: list[Onboarded]) -> dict:
    """Zero-shot vs few-shot over the held-back rows of every onboarded dataset together."""
    scored = [d.query for d in done if d.query]
    if not scored:
        return {}
    y = np.concatenate([q["y"] for q in scored])
    return {"datasets": len(scored), "query_rows": int(len(y)),
            **{k: _metric(task, y, np.concatenate([q[k] for q in scored])) for k in ("zero_shot", "few_shot")}}


def store_weights(settings: Settings, champion: Champion, record: DatasetRecord, generated: GeneratedModel,
                  folder: Path) -> tuple[str, Path]:
    """Into the lake under the champion's version: a rerun writes identical bytes (left untouched),
    and weights from another version never overwrite these."""
    local = folder / f"{record.name}.safetensors"
    generated.save(local)
    key = f"weights/{settings.tracking.model_name}/v{champion.version}/{record.name}.safetensors"
    return Lake.from_settings(settings).write_bytes(key, local.read_bytes()), local


def publish(settings: Settings, champion: Champion, done: list[Onboarded]) -> None:
    """Weights linked to their dataset in the catalog; the dataset is marked onboarded last."""
    with open_catalog_from_settings(settings) as cat:
        for d in done:
            cat.publish_generated_weights(d.urn, champion.version, d.location, d.metrics,
                                          group_name=settings.tracking.model_name)
            cat.set_onboarding(d.urn, champion.version)


# ---- helpers ---------------------------------------------------------------------------------
def _labelled(t: DatasetTable) -> DatasetTable | None:
    y = np.asarray(t.target)
    keep = ~np.isnan(y.astype(np.float64)) if y.dtype.kind == "f" else np.array([v is not None for v in y])
    if not keep.any():
        return None
    return t.rows(keep)


def _support_query(t: DatasetTable, k: int, seed: int) -> tuple[DatasetTable, DatasetTable | None]:
    order = np.random.default_rng(seed).permutation(t.n_rows)
    if t.n_rows < k + 2:  # too few rows to hold any back: adapt on all of them, no evaluation
        return t.rows(order), None
    return t.rows(order[:k]), t.rows(order[k:])


def _predict(generated: GeneratedModel, t: DatasetTable, enc: FleetEncoder) -> np.ndarray:
    x = np.stack([np.asarray(t.features.get(f, np.full(t.n_rows, np.nan)), dtype=np.float64) for f in enc.features], 1)
    return generated.predict(x)


def _metric(task: str, y: np.ndarray, pred: np.ndarray) -> float:
    if task == "regression":
        return r2(torch.tensor(y.astype(np.float64)), torch.tensor(pred.astype(np.float64)))
    return float(np.mean(pred == y))
