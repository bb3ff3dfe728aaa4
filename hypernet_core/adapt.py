"""Weights for datasets the model has never seen.

- zero-shot: the "unknown" embedding plus the dataset's meta-features.
- few-shot: with k labelled rows, fit only the dataset's embedding (the hypernetwork stays frozen),
  starting from the unknown embedding and pulled back towards it. Cross-validation on the k rows
  decides whether the fitted embedding clearly beats zero-shot; if not, zero-shot is kept, so a
  handful of unlucky rows cannot make a dataset worse off than having no rows at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hypernet_core.fleet import Fleet
from hypernet_core.model import Conditioning, HyperNetwork
from hypernet_core.train import predict, task_loss


@dataclass
class Adaptation:
    emb: Tensor             # (D, E) embedding of each dataset of the fleet
    few_shot: list[bool]    # per dataset: True when a fitted embedding is used, False when zero-shot was kept
    shrink: float           # the chosen a in e0 + a (e_fit - e0); 0 means zero-shot
    cv_loss: list[float]    # cross-validated loss for each candidate in SHRINK


def zero_shot_embeddings(model: HyperNetwork, n: int) -> Tensor:
    return model.conditioner.embedding.unknown.detach().expand(n, -1).clone()  # (n, E)


def embedding_spread(model: HyperNetwork) -> float:
    """Mean squared distance of the training datasets' embeddings from the unknown one: the prior's width."""
    table = model.conditioner.embedding.table.weight.detach()
    known, unknown = table[:-1], table[-1]
    return float((known - unknown).pow(2).sum(1).mean().clamp(min=1e-6))


def fit_embeddings(model: HyperNetwork, fleet: Fleet, steps: int = 60, lr: float = 0.05) -> Tensor:
    """MAP embeddings (D, E) fitted on all rows of `fleet`; only the embeddings receive gradients.

    Objective per dataset: sum of its rows' losses + (noise / spread) * |e - e_unknown|², i.e. a
    Gaussian prior centred on the unknown embedding with the training embeddings' spread, and the
    noise level estimated by the zero-shot loss on these rows. With few rows the prior dominates.
    """
    start = zero_shot_embeddings(model, fleet.n_datasets).to(fleet.y.device)
    emb = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([emb], lr=lr)
    uniq, group = torch.unique(fleet.dataset, return_inverse=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        def loss_fn(e: Tensor) -> Tensor:  # mean loss over all rows of the fleet
            out, _ = model(fleet.x, fleet.mask, group, Conditioning(fleet.emb_ids[uniq], fleet.meta[uniq], e[uniq]))
            return task_loss(fleet.task, out, fleet.y)

        with torch.no_grad():
            pull = loss_fn(start).item() / embedding_spread(model)
        for _ in range(steps):
            loss = loss_fn(emb) + pull * (emb - start).pow(2).sum() / len(fleet)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return emb.detach()


def _row_losses(model: HyperNetwork, fleet: Fleet, emb: Tensor) -> Tensor:
    """Loss of every row (N,) under the given per-dataset embeddings."""
    out = predict(model, fleet, emb)
    if fleet.task == "regression":
        return (out[:, 0] - fleet.y).pow(2)
    return F.cross_entropy(out, fleet.y, reduction="none")


SHRINK = (0.0, 0.25, 0.5, 0.75, 1.0)


def adapt(model: HyperNetwork, fleet: Fleet, folds: int = 3, steps: int = 30, seed: int = 0) -> Adaptation:
    """Few-shot embeddings for every dataset of `fleet` (its rows are the k labelled rows per dataset).

    The fitted embedding is shrunk towards zero-shot: e = e0 + a (e_fit - e0), with `a` chosen from
    SHRINK by cross-validation pooled over all rows of all datasets being adapted. Pooling makes the
    choice reliable even with 5 rows per dataset, and a = 0 (zero-shot) is always a candidate, so
    labelled rows never make the answer worse than having none beyond cross-validation noise.
    """
    fleet = fleet.as_unseen()
    zero = zero_shot_embeddings(model, fleet.n_datasets).to(fleet.y.device)
    g = torch.Generator().manual_seed(seed)
    fold_of_row = torch.randint(0, folds, (len(fleet),), generator=g).to(fleet.y.device)
    cv_loss = torch.zeros(len(SHRINK))
    for f in range(folds):
        fit_rows = torch.nonzero(fold_of_row != f).squeeze(1)
        held_rows = torch.nonzero(fold_of_row == f).squeeze(1)
        if len(fit_rows) == 0 or len(held_rows) == 0:
            continue
        fitted = fit_embeddings(model, fleet.rows(fit_rows), steps)
        held = fleet.rows(held_rows)
        for i, a in enumerate(SHRINK):
            cv_loss[i] += _row_losses(model, held, zero + a * (fitted - zero)).sum().cpu()
    best = SHRINK[int(torch.argmin(cv_loss))]
    emb = zero + best * (fit_embeddings(model, fleet, steps) - zero) if best > 0 else zero
    return Adaptation(emb, [best > 0] * fleet.n_datasets, best, cv_loss.tolist())
