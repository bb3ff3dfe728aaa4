"""Training any fleet model: dataset-balanced sampling, gradient accumulation, warm-up, early stopping,
checkpoints that a killed run resumes from, and data-parallel training under torchrun."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from hypernet_core import checkpoint, distributed
from hypernet_core.config import TrainConfig
from hypernet_core.fleet import Fleet, split_rows
from hypernet_core.metrics import Evaluation, score
from hypernet_core.model import Conditioning, FleetModel


class BalancedSampler:
    """Each draw: `datasets_per_batch` distinct datasets uniformly, then `rows_per_dataset` rows from each.

    Small datasets are seen as often as large ones, which is what a fleet of unequal sizes needs;
    everything is vectorised (rows sorted by dataset, offsets + uniform positions).
    """

    def __init__(self, dataset: Tensor, n_datasets: int, datasets_per_batch: int, rows_per_dataset: int,
                 generator: torch.Generator):
        self.order = torch.argsort(dataset.cpu(), stable=True)
        self.counts = torch.bincount(dataset.cpu(), minlength=n_datasets)
        self.offsets = torch.cumsum(self.counts, 0) - self.counts
        self.present = torch.nonzero(self.counts > 0).squeeze(1)
        self.k = min(datasets_per_batch, len(self.present))
        # With fewer datasets than asked for, draw more rows from each: the batch size stays the same.
        self.rows_per_dataset = math.ceil(datasets_per_batch * rows_per_dataset / max(1, self.k))
        self.g = generator

    def sample(self) -> Tensor:
        ds = self.present[torch.randperm(len(self.present), generator=self.g)[: self.k]]          # (k,)
        u = torch.rand(self.k, self.rows_per_dataset, generator=self.g)                           # (k, r)
        pos = self.offsets[ds, None] + (u * self.counts[ds, None]).long()                         # (k, r)
        return self.order[pos.flatten()]                                                          # (k*r,)


def batch_inputs(fleet: Fleet, rows: Tensor, emb: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Conditioning]:
    """Rows -> (x, mask, group, cond): the distinct datasets of the batch are found once here."""
    uniq, group = torch.unique(fleet.dataset[rows], return_inverse=True)                          # (U,), (B,)
    cond = Conditioning(fleet.emb_ids[uniq], fleet.meta[uniq], None if emb is None else emb[uniq])
    return fleet.x[rows], fleet.mask[rows], group, cond


def task_loss(task: str, out: Tensor, y: Tensor) -> Tensor:
    if task == "regression":
        return F.mse_loss(out[:, 0].float(), y)
    return F.cross_entropy(out.float(), y)


@torch.no_grad()
def predict(model: FleetModel, fleet: Fleet, emb: Tensor | None = None, chunk: int = 8192) -> Tensor:
    """Model outputs (N, out_dim) for every row of the fleet, in eval mode."""
    was_training = model.training
    model.eval()
    outs = []
    for start in range(0, len(fleet), chunk):
        rows = torch.arange(start, min(start + chunk, len(fleet)), device=fleet.y.device)
        x, mask, group, cond = batch_inputs(fleet, rows, emb)
        outs.append(model(x, mask, group, cond)[0].float())
    model.train(was_training)
    return torch.cat(outs) if outs else torch.zeros(0, 1)


def evaluate(model: FleetModel, fleet: Fleet, emb: Tensor | None = None) -> Evaluation:
    out = predict(model, fleet, emb)
    return score(fleet.task, fleet.y.cpu(), out.cpu(), fleet.dataset.cpu(), fleet.names)


@dataclass
class FitResult:
    steps: int
    best_val_loss: float
    seconds: float
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0        # the step a checkpoint was resumed from (0: trained from the start)
    steps_per_epoch: int = 0


def _schedule(max_steps: int):
    """Linear ramp over the first 5 % of steps, then cosine decay to 10 % of the base rate."""
    ramp = max(1, int(0.05 * max_steps))

    def factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        t = (step - ramp) / max(1, max_steps - ramp)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return factor


def _progress(enabled: bool, label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=True, disable=not enabled)


def steps_per_epoch(n_rows: int, cfg: TrainConfig, world_size: int = 1) -> int:
    """Optimiser steps in one epoch: as many as it takes to draw `n_rows` rows over all processes."""
    per_step = cfg.datasets_per_batch * cfg.rows_per_dataset * cfg.accumulate * world_size
    return max(1, math.ceil(n_rows / max(1, per_step)))


@dataclass
class _LoopState:
    """Everything the training loop carries from one step to the next, besides model and optimiser."""

    step: int = 0
    best: float = math.inf
    best_state: dict | None = None
    stale: int = 0
    history: list[dict] = field(default_factory=list)
    done: bool = False
    seconds: float = 0.0


def fit(model: FleetModel, train: Fleet, cfg: TrainConfig, val: Fleet | None = None, label: str | None = None,
        checkpoint_dir: str | Path | None = None, resume: bool = True) -> FitResult:
    """Train `model` on `train`; early-stop on `val` (default: `cfg.val_frac` of each dataset's rows).

    Checkpoints: with `checkpoint_dir` (or `cfg.checkpoint_dir`, in its sub-folder `label or model.kind`)
    the whole training state (model, optimiser, schedule, sampler and RNG states, early-stopping state,
    history) is written atomically every `cfg.checkpoint_every` epochs and when training ends. A fit that
    finds a checkpoint of the same run there resumes from it (`resume=False` starts over) and ends exactly
    as an uninterrupted fit would; one that finds a finished run only restores its result. A checkpoint
    of a different run (other data, model or settings) is refused rather than resumed.

    Distributed: started by torchrun (WORLD_SIZE > 1), every process calls `fit` with the same arguments;
    the model is wrapped in DistributedDataParallel, each process draws its own dataset mixes (seed + rank)
    and the early-stopping decision uses the validation loss summed over all processes, so every process
    holds the same model at the end. Only rank 0 writes checkpoints (the folder must be shared).
    """
    where = distributed.init()
    torch.manual_seed(cfg.seed + where.rank)
    device = distributed.resolve_device(cfg.device, where)
    model.to(device)
    if val is None and cfg.val_frac > 0:
        train, val = split_rows(train, cfg.val_frac, seed=cfg.seed)
    folder = _checkpoint_folder(checkpoint_dir, cfg, label, model)
    fingerprint = _fingerprint(model, train, val, cfg, where.world_size) if folder is not None else None
    train = train.to(device)
    val = val.to(device) if val is not None else None
    sampler = BalancedSampler(train.dataset, train.n_datasets, cfg.datasets_per_batch, cfg.rows_per_dataset,
                              torch.Generator().manual_seed(cfg.seed + where.rank))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg.max_steps))
    hyper = model.hyper_parameters()
    warmup_steps = int(cfg.warmup_frac * cfg.max_steps) if hyper else 0
    epoch = steps_per_epoch(len(train), cfg, where.world_size)

    run = _LoopState()
    if folder is not None and resume:
        saved = checkpoint.load(folder)
        if saved is not None:
            run = _restore(saved, fingerprint, folder, model, opt, sched, sampler, device, where)
    resumed_from = run.step

    def save(done: bool) -> None:
        run.done = done
        ranks = _rng_states(sampler, device, where)  # a collective: every rank takes part
        if where.is_main:
            checkpoint.save(folder, {
                "fingerprint": fingerprint, "step": run.step, "done": done, "steps_per_epoch": epoch,
                "seconds": run.seconds + time.perf_counter() - start,
                "best": run.best, "stale": run.stale, "history": run.history,
                "model": model.state_dict(), "best_state": run.best_state,
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "ranks": ranks})

    for p in hyper:  # DDP registers the parameters that require gradients when it wraps the model
        p.requires_grad_(True)
    net = _wrap(model, device, where)
    start = time.perf_counter()
    model.train()
    with _progress(cfg.progress and where.is_main, label or model.kind) as bar:
        task = bar.add_task("train", total=cfg.max_steps, completed=run.step, info="")
        for step in range(run.step + 1, cfg.max_steps + 1) if not run.done else ():
            run.step = step
            # Warm-up: only the shared layers learn; the generator's output stays at zero. In one process
            # the hypernetwork is frozen by requires_grad; under DDP its gradients are dropped (see _wrap).
            frozen = step <= warmup_steps
            if not where.enabled:
                for p in hyper:
                    p.requires_grad_(not frozen)
            drop = hyper if frozen and where.enabled else ()
            train_loss = train_step(net, train, sampler, opt, cfg, device, frozen=drop)
            sched.step()
            bar.advance(task)
            if val is not None and not (step % cfg.eval_every and step != cfg.max_steps):
                val_loss = _validation_loss(model, val, where)
                if where.enabled:  # report the step's loss over all processes
                    train_loss = distributed.all_reduce_sum(torch.tensor(train_loss, dtype=torch.float64)).item() \
                        / where.world_size
                run.history.append({"step": step, "train_loss": train_loss, "val_loss": val_loss})
                bar.update(task, info=f"val loss {val_loss:.4f}")
                if val_loss < run.best - 1e-6:
                    run.best, run.best_state, run.stale = val_loss, copy.deepcopy(model.state_dict()), 0
                elif step > warmup_steps:  # the warm-up is never cut short
                    run.stale += 1
                    if run.stale >= cfg.patience:
                        break
            if folder is not None and cfg.checkpoint_every > 0 and step % (epoch * cfg.checkpoint_every) == 0 \
                    and step < cfg.max_steps:
                save(done=False)
        if folder is not None and not run.done:
            save(done=True)
    for p in hyper:
        p.requires_grad_(True)
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    model.eval()
    return FitResult(run.step, run.best, run.seconds + time.perf_counter() - start, run.history,
                     resumed_from=resumed_from, steps_per_epoch=epoch)


def train_step(model: FleetModel, train: Fleet, sampler: BalancedSampler, opt: torch.optim.Optimizer,
               cfg: TrainConfig, device: torch.device, frozen: Sequence[nn.Parameter] = ()) -> float:
    """One optimiser step over `cfg.accumulate` micro-batches, each a different mix of datasets.

    `model` may be wrapped in DistributedDataParallel: gradients are then averaged over the processes
    once per step (the micro-batches before the last accumulate locally, under `no_sync`).
    `frozen` parameters get no update: their gradients are dropped before the optimiser step."""
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and cfg.bf16 else nullcontext()
    ddp = isinstance(model, DistributedDataParallel)
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for i in range(cfg.accumulate):
        with model.no_sync() if ddp and i < cfg.accumulate - 1 else nullcontext():
            rows = sampler.sample().to(device)
            x, mask, group, cond = batch_inputs(train, rows)
            with autocast:
                out, penalty = model(x, mask, group, cond)
            loss = task_loss(train.task, out, train.y[rows]) + cfg.update_l2 * penalty.float()
            (loss / cfg.accumulate).backward()
        total += loss.item()
    for p in frozen:
        p.grad = None  # AdamW skips a parameter without gradient: no step, no weight decay, no moments
    opt.step()
    return total / cfg.accumulate


def _validation_loss(model: FleetModel, val: Fleet, where: distributed.DistInfo) -> float:
    """The mean validation loss; with several processes each scores its share of the rows and the
    sums are added up, so every process gets the same number (and takes the same decision)."""
    if not where.enabled:
        return validation_loss(model, val)
    rows = torch.arange(where.rank, len(val), where.world_size, device=val.y.device)
    part = val.rows(rows)
    with torch.no_grad():
        out = predict(model, part)
        if part.task == "regression":
            loss = F.mse_loss(out[:, 0].float(), part.y, reduction="sum")
        else:
            loss = F.cross_entropy(out.float(), part.y, reduction="sum") if len(part) else out.new_zeros(())
    count = torch.tensor(float(len(part)), dtype=torch.float64, device=loss.device)
    total = distributed.all_reduce_sum(torch.stack([loss.double(), count]))
    return (total[0] / total[1].clamp(min=1)).item()


def _wrap(model: FleetModel, device: torch.device, where: distributed.DistInfo):
    """DDP around the model when distributed.

    The warm-up freezes the hypernetwork. Toggling `requires_grad` would take its parameters out of
    the autograd graph, which plain DDP cannot handle (it waits for their gradients); the alternative,
    `find_unused_parameters=True`, walks the graph on every step of the whole run to find them. Here
    they keep requiring gradients under DDP, so every parameter is always in the graph, and train_step
    drops their (averaged) gradients before the optimiser step during the warm-up: AdamW then skips
    them exactly as it does in one process, where their gradient is None too. Merely zeroing those
    gradients would not do: weight decay and the Adam moments would still move them. The price is
    computing and averaging the hypernetwork's gradients during the warm-up only."""
    if not where.enabled:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


# ---- checkpoint contents ---------------------------------------------------------------------------
_NOT_IN_FINGERPRINT = ("progress", "device", "checkpoint_dir", "checkpoint_every")


def _checkpoint_folder(checkpoint_dir, cfg: TrainConfig, label: str | None, model: FleetModel) -> Path | None:
    if checkpoint_dir is not None:
        return Path(checkpoint_dir)
    if cfg.checkpoint_dir:
        return Path(cfg.checkpoint_dir) / (re.sub(r"[^A-Za-z0-9._-]+", "-", label or model.kind).strip("-") or "fit")
    return None


def _fingerprint(model: FleetModel, train: Fleet, val: Fleet | None, cfg: TrainConfig, world_size: int) -> dict:
    """What makes a run the same run: model, training settings, process count and the data itself."""
    h = hashlib.sha256()
    for fleet in (train, val):
        if fleet is None:
            h.update(b"<none>")
            continue
        h.update(repr((fleet.names, fleet.task)).encode())
        for t in (fleet.x, fleet.mask, fleet.y, fleet.dataset, fleet.meta, fleet.emb_ids):
            a = t.detach().cpu().contiguous()
            h.update(repr((str(a.dtype), tuple(a.shape))).encode())
            h.update(a.numpy().tobytes())
    return json.loads(json.dumps({
        "kind": model.kind,
        "parameters": {k: list(v.shape) for k, v in model.state_dict().items()},
        "train_config": {k: v for k, v in cfg.to_dict().items() if k not in _NOT_IN_FINGERPRINT},
        "world_size": world_size,
        "data_sha256": h.hexdigest(),
    }, default=str))


def _rng_states(sampler: BalancedSampler, device: torch.device, where: distributed.DistInfo) -> list[dict]:
    """Every rank's sampler and global RNG states, in rank order."""
    mine = {"sampler": sampler.g.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        mine["cuda"] = torch.cuda.get_rng_state(device)
    if not where.enabled:
        return [mine]
    gathered = {k: distributed.all_gather(v) for k, v in mine.items()}
    return [{k: gathered[k][r] for k in mine} for r in range(where.world_size)]


def _restore(saved: dict, fingerprint: dict, folder: Path, model: FleetModel, opt, sched, sampler: BalancedSampler,
             device: torch.device, where: distributed.DistInfo) -> _LoopState:
    if saved.get("fingerprint") != fingerprint:
        old = saved.get("fingerprint") or {}
        differ = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
        if "train_config" in differ:
            a, b = old.get("train_config", {}), fingerprint["train_config"]
            differ += [f"train_config.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        raise checkpoint.CheckpointError(
            f"the checkpoint in {folder} is from a different run (differs in: {', '.join(differ)}); "
            "use another checkpoint folder, delete this one, or pass resume=False to start over")
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    sched.load_state_dict(saved["scheduler"])
    mine = saved["ranks"][where.rank]
    sampler.g.set_state(mine["sampler"])
    torch.set_rng_state(mine["torch"])
    if device.type == "cuda" and "cuda" in mine:
        torch.cuda.set_rng_state(mine["cuda"], device)
    best_state = saved["best_state"]
    if best_state is not None:
        best_state = {k: v.to(device) for k, v in best_state.items()}
    return _LoopState(step=saved["step"], best=saved["best"], best_state=best_state, stale=saved["stale"],
                     history=saved["history"], done=saved["done"], seconds=saved["seconds"])


@torch.no_grad()
def validation_loss(model: FleetModel, val: Fleet) -> float:
    return task_loss(val.task, predict(model, val), val.y).item()
