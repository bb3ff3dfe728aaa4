"""The evaluation protocol shared by `hypernet demo` and `hypernet train`.

- seen: hold out a share of every dataset's rows, train on the rest, score the held-out rows.
- unseen: k-fold over whole datasets; train on k-1 folds, score the held-out datasets zero-shot
  (meta-features only), pool predictions over folds and score once.
Every model gets the same splits, the same configuration and the same training budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
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
    encoder: object = field(default=None, repr=False)  # ... and the encoder fitted with it
    train_fleet: object = field(default=None, repr=False)


def train_one(kind: str, tables: Sequence[DatasetTable], enc: FleetEncoder, mcfg: ModelConfig, tcfg: TrainConfig):
    model = build_model(kind, mcfg, enc.n_features, enc.meta_dim, enc.out_dim, len(tables), seed=tcfg.seed)
    result = fit(model, enc.transform(tables).to(tcfg.device), tcfg, label=kind)
    return model, result


@dataclass
class Members:
    """`n` copies of one kind of model trained with seeds seed, seed+1, ...; predictions are averaged.

    On fleets of small datasets the spread between seeds is as large as the gaps between methods
    (HSB: ±0.005 R²); averaging a few seeds is the cheapest way to report a method, not a seed.
    Every kind gets the same number of members, so the comparison stays at equal budget."""

    models: list
    seconds: float
    steps: int

    @classmethod
    def train(cls, kind: str, tables, enc: FleetEncoder, mcfg: ModelConfig, tcfg: TrainConfig, n: int) -> "Members":
        models, seconds, steps = [], 0.0, 0
        for i in range(n):
            model, res = train_one(kind, tables, enc, mcfg, replace(tcfg, seed=tcfg.seed + i))
            models.append(model)
            seconds, steps = seconds + res.seconds, steps + res.steps
        return cls(models, seconds, steps)

    def predict(self, fleet, embs: list | None = None) -> torch.Tensor:
        embs = embs or [None] * len(self.models)
        return torch.stack([predict(m, fleet, e).cpu() for m, e in zip(self.models, embs)]).mean(0)

    def parameter_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self.models:
            for k, v in m.parameter_counts().items():
                counts[k] = counts.get(k, 0) + v
        return counts | {"members": len(self.models)}


def dataset_folds(tables: Sequence[DatasetTable], k: int, seed: int) -> list[tuple[list[DatasetTable], list[DatasetTable]]]:
    folds = []
    for held in kfold_datasets(len(tables), k, seed):
        held_set = set(held)
        folds.append(([t for i, t in enumerate(tables) if i not in held_set], [tables[i] for i in held]))
    return folds


def run_seen(tables: Sequence[DatasetTable], kinds: Sequence[str], mcfg: ModelConfig, tcfg: TrainConfig,
             task: str = "regression", holdout: float = 0.25) -> dict[str, ModelResult]:
    return run_protocol(tables, kinds, (), mcfg, tcfg, task, holdout=holdout)[0]


def run_unseen(tables: Sequence[DatasetTable], kinds: Sequence[str], mcfg: ModelConfig, tcfg: TrainConfig,
               task: str = "regression", k: int = 5, shots: Sequence[int] = ()) -> dict[str, ModelResult]:
    return run_protocol(tables, (), kinds, mcfg, tcfg, task, folds=k, shots=shots)[1]


def run_protocol(tables: Sequence[DatasetTable], seen_kinds: Sequence[str], unseen_kinds: Sequence[str],
                 mcfg: ModelConfig, tcfg: TrainConfig, task: str = "regression", holdout: float = 0.25,
                 folds: int = 5, shots: Sequence[int] = (), workers: int = 1, members: int = 1
                 ) -> tuple[dict[str, ModelResult], dict[str, ModelResult]]:
    """Seen and unseen protocols as independent jobs (one per seen model, one per fold), run in
    `workers` processes: on a small CPU machine the tiny models leave cores idle otherwise."""
    show_jobs = tcfg.progress and workers > 1
    if show_jobs:  # one bar over jobs here instead of interleaved per-model bars from each process
        tcfg = replace(tcfg, progress=False)
    train, test = holdout_tables(tables, holdout, seed=tcfg.seed)
    jobs = [(_seen_job, (kind, train, test, mcfg, tcfg, task, members)) for kind in seen_kinds]
    if unseen_kinds:
        jobs += [(_fold_job, (tr, te, unseen_kinds, mcfg, tcfg, task, shots, members))
                 for tr, te in dataset_folds(tables, folds, tcfg.seed)]
    outputs = _run_jobs(jobs, workers, show_jobs)
    seen = {r.kind: r for r in outputs[: len(seen_kinds)]}
    return seen, _merge_folds(outputs[len(seen_kinds):], unseen_kinds, task, shots, tcfg.seed)


def table_rows(seen: dict[str, ModelResult], unseen: dict[str, ModelResult]) -> dict[str, dict]:
    """One row per model for the comparison table (and its JSON): both splits, size, time."""
    rows = {}
    for kind, r in seen.items():
        u = unseen.get(kind)
        rows[kind] = {"seen": r.seen, "unseen": u.unseen if u else None, "params": r.params,
                      "seconds": r.seconds + (u.seconds if u else 0.0), "steps": r.steps,
                      "per_dataset_seen": r.per_dataset}
    return rows


def _call(job):
    fn, args = job
    return fn(*args)


def _single_thread() -> None:
    torch.set_num_threads(1)  # one process per core; torch's own threads would only fight them


def _run_jobs(jobs: list, workers: int, progress: bool = False) -> list:
    if workers <= 1 or len(jobs) <= 1:
        return [_call(j) for j in jobs]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from rich.progress import Progress

    # spawn, not fork: forking a process whose torch thread pools are running can deadlock.
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn"),
                             initializer=_single_thread) as pool, Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(f"training ({workers} processes)", total=len(jobs))
        futures = {pool.submit(_call, job): i for i, job in enumerate(jobs)}
        results: list = [None] * len(jobs)
        for done in as_completed(futures):
            results[futures[done]] = done.result()
            bar.advance(task)
        return results


def _seen_job(kind, train, test, mcfg, tcfg, task, members) -> ModelResult:
    enc = FleetEncoder.fit(train, task=task)
    test_fleet = enc.transform(test).to(tcfg.device)
    ens = Members.train(kind, train, enc, mcfg, tcfg, members)
    ev = score(task, test_fleet.y.cpu(), ens.predict(test_fleet), test_fleet.dataset.cpu(), test_fleet.names)
    return ModelResult(kind, seen=ev.overall, params=ens.parameter_counts(), seconds=ens.seconds, steps=ens.steps,
                       per_dataset=ev.per_dataset, model=ens.models[0].cpu(), encoder=enc,
                       train_fleet=enc.transform(train))


def _fold_job(train, test, kinds, mcfg, tcfg, task, shots, members) -> dict:
    """One fold of whole held-out datasets: every model's zero-shot outputs, and the few-shot curve."""
    enc = FleetEncoder.fit(train, task=task)
    test_fleet = enc.transform(test, known=False).to(tcfg.device)
    out = {"y": test_fleet.y.cpu(), "outs": {}, "seconds": {}, "steps": {}, "curve": None}
    for kind in kinds:
        ens = Members.train(kind, train, enc, mcfg, tcfg, members)
        out["outs"][kind] = ens.predict(test_fleet)
        out["seconds"][kind], out["steps"][kind] = ens.seconds, ens.steps
        if kind == "hypernetwork" and shots:
            out["curve"] = FewShotCurve(task, shots, tcfg.seed)
            out["curve"].add_fold(ens, enc, test, tcfg.device)
    return out


def _merge_folds(fold_outputs: list[dict], kinds: Sequence[str], task: str, shots: Sequence[int],
                 seed: int) -> dict[str, ModelResult]:
    if not fold_outputs:
        return {}
    y = torch.cat([f["y"] for f in fold_outputs])
    zeros = torch.zeros(len(y), dtype=torch.long)
    results = {}
    for kind in kinds:
        pred = torch.cat([f["outs"][kind] for f in fold_outputs])
        results[kind] = ModelResult(kind, unseen=score(task, y, pred, zeros, ["all"]).overall,
                                    seconds=sum(f["seconds"][kind] for f in fold_outputs),
                                    steps=sum(f["steps"][kind] for f in fold_outputs))
    curves = [f["curve"] for f in fold_outputs if f["curve"] is not None]
    if curves and "hypernetwork" in results:
        results["hypernetwork"].few_shot = FewShotCurve.merged(curves).result()
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

    def add_fold(self, ens: "Members", enc: FleetEncoder, test: Sequence[DatasetTable], device: str) -> None:
        from hypernet_core.adapt import adapt, zero_shot_embeddings

        pool = max(self.shots)
        rng = np.random.default_rng(self.seed)
        support, query = [], []
        for t in test:
            if t.n_rows <= pool + 1:
                continue
            order = rng.permutation(t.n_rows)
            support.append(t.rows(order[:pool]))
            query.append(t.rows(order[pool:]))
        if not query:
            return
        self.n_datasets += len(query)
        q = enc.transform(query, known=False).to(device)
        self.y.append(q.y.cpu())
        self.preds[0].append(ens.predict(q, [zero_shot_embeddings(m, q.n_datasets) for m in ens.models]))
        for k in self.shots:
            s = enc.transform([t.rows(slice(0, k)) for t in support], known=False).to(device)
            start = time.perf_counter()
            adapted = [adapt(m, s, seed=self.seed) for m in ens.models]
            self.seconds[k] += time.perf_counter() - start
            self.preds[k].append(ens.predict(q, [a.emb for a in adapted]))
            self.kept_zero_shot[k] += [not used for a in adapted for used in a.few_shot]

    @classmethod
    def merged(cls, curves: list["FewShotCurve"]) -> "FewShotCurve":
        out = cls(curves[0].task, curves[0].shots, curves[0].seed)
        for c in curves:
            out.y += c.y
            out.n_datasets += c.n_datasets
            for k in out.preds:
                out.preds[k] += c.preds[k]
            for k in out.shots:
                out.kept_zero_shot[k] += c.kept_zero_shot[k]
                out.seconds[k] += c.seconds[k]
        return out

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
