"""Training any fleet model: dataset-balanced sampling, gradient accumulation, warm-up, early stopping."""

from __future__ import annotations

import copy
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

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


def fit(model: FleetModel, train: Fleet, cfg: TrainConfig, val: Fleet | None = None, label: str | None = None) -> FitResult:
    """Train `model` on `train`; early-stop on `val` (default: `cfg.val_frac` of each dataset's rows)."""
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    model.to(device)
    if val is None and cfg.val_frac > 0:
        train, val = split_rows(train, cfg.val_frac, seed=cfg.seed)
    train = train.to(device)
    val = val.to(device) if val is not None else None
    sampler = BalancedSampler(train.dataset, train.n_datasets, cfg.datasets_per_batch, cfg.rows_per_dataset,
                              torch.Generator().manual_seed(cfg.seed))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg.max_steps))
    hyper = model.hyper_parameters()
    warmup_steps = int(cfg.warmup_frac * cfg.max_steps) if hyper else 0

    best, best_state, stale, history = math.inf, None, 0, []
    start, step = time.perf_counter(), 0
    model.train()
    with _progress(cfg.progress, label or model.kind) as bar:
        task = bar.add_task("train", total=cfg.max_steps, info="")
        for step in range(1, cfg.max_steps + 1):
            for p in hyper:  # warm-up: only the shared layers learn; the generator's output stays at zero
                p.requires_grad_(step > warmup_steps)
            train_loss = train_step(model, train, sampler, opt, cfg, device)
            sched.step()
            bar.advance(task)
            if val is None or (step % cfg.eval_every and step != cfg.max_steps):
                continue
            val_loss = validation_loss(model, val)
            history.append({"step": step, "train_loss": train_loss, "val_loss": val_loss})
            bar.update(task, info=f"val loss {val_loss:.4f}")
            if val_loss < best - 1e-6:
                best, best_state, stale = val_loss, copy.deepcopy(model.state_dict()), 0
            elif step > warmup_steps:  # the warm-up is never cut short
                stale += 1
                if stale >= cfg.patience:
                    break
    for p in hyper:
        p.requires_grad_(True)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(step, best, time.perf_counter() - start, history)


def train_step(model: FleetModel, train: Fleet, sampler: BalancedSampler, opt: torch.optim.Optimizer,
               cfg: TrainConfig, device: torch.device) -> float:
    """One optimiser step over `cfg.accumulate` micro-batches, each a different mix of datasets."""
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and cfg.bf16 else nullcontext()
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for _ in range(cfg.accumulate):
        rows = sampler.sample().to(device)
        x, mask, group, cond = batch_inputs(train, rows)
        with autocast:
            out, penalty = model(x, mask, group, cond)
        loss = task_loss(train.task, out, train.y[rows]) + cfg.update_l2 * penalty.float()
        (loss / cfg.accumulate).backward()
        total += loss.item()
    opt.step()
    return total / cfg.accumulate


@torch.no_grad()
def validation_loss(model: FleetModel, val: Fleet) -> float:
    return task_loss(val.task, predict(model, val), val.y).item()
