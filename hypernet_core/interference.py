"""Task interference: do the datasets of a fleet pull the shared weights the same way or against each other?

For every dataset d we take the gradient g_d of its mean loss with respect to the *shared* target
network (`model.target`), and report the dataset × dataset matrix of cosines cos(g_i, g_j), as in
GEM (Lopez-Paz & Ranzato) and gradient-conflict work (PCGrad, TAG). A negative cosine means a step
that helps dataset i hurts dataset j on the weights they share: exactly the conflict a hypernetwork
is meant to take off the shared layers.

All D gradients come from one batched pass: `torch.func.vmap(grad(loss))` over per-dataset blocks
of rows (padded to the same length, the padding weighted 0), so 200 datasets cost about one
forward/backward over their rows, not 200 of them. Gradients are randomly projected (seeded
Gaussian, Johnson–Lindenstrauss) to `proj_dim` before the cosine, and cosines are averaged over a
few independent draws of rows so one unlucky batch doesn't decide the picture.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from hypernet_core.conditioning import DatasetEmbedding
from hypernet_core.fleet import Fleet
from hypernet_core.model import Conditioning, FleetModel
from hypernet_core.target import SharedTarget


@dataclass
class InterferenceResult:
    matrix: Tensor                              # (D, D) mean gradient cosine; NaN for a dataset without rows
    names: list[str]
    mean_off_diagonal: float                    # mean cosine over pairs i != j
    negative_share: float                       # share of pairs i < j with cosine < 0
    top_conflicts: list[tuple[str, str, float]]  # the most negative pairs, most conflicting first
    seconds: float

    def to_dict(self) -> dict:
        """JSON-ready (the matrix as nested lists, NaN kept as None) for run logs and tables."""
        rows = [[None if v != v else round(v, 6) for v in row] for row in self.matrix.tolist()]
        return {"names": self.names, "matrix": rows, "mean_off_diagonal": self.mean_off_diagonal,
                "negative_share": self.negative_share, "seconds": self.seconds,
                "top_conflicts": [{"a": a, "b": b, "cosine": c} for a, b, c in self.top_conflicts]}


def interference_matrix(model: FleetModel, fleet: Fleet, steps: int = 4, rows_per_dataset: int = 16,
                        proj_dim: int | None = 512, seed: int = 0, top: int = 10) -> InterferenceResult:
    """Mean over `steps` draws of rows of the cosine between per-dataset gradients on `model.target`.

    Gradients are taken in eval mode (no dropout, no embedding dropout, BatchNorm running statistics)
    so that they describe the model as it predicts, and the same call gives the same matrix.
    `proj_dim=None` (or a target with fewer parameters) skips the projection: exact cosines."""
    if steps < 1 or rows_per_dataset < 1:
        raise ValueError(f"steps ({steps}) and rows_per_dataset ({rows_per_dataset}) must be at least 1")
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    proj = None
    total = torch.zeros(fleet.n_datasets, fleet.n_datasets, dtype=torch.float64, device=fleet.x.device)
    for _ in range(steps):
        rows, weight = sample_blocks(fleet, rows_per_dataset, gen)                       # (D, R), (D, R)
        g = per_dataset_gradients(model, fleet, rows, weight)                             # (D, P)
        if proj is None and proj_dim is not None and g.shape[1] > proj_dim:
            proj = gaussian_projection(g.shape[1], proj_dim, gen).to(g.device)           # (P, K)
        total += cosine_matrix(g if proj is None else g @ proj)                           # (D, D)
    matrix = (total / steps).float().cpu()
    mean_off, neg_share, conflicts = summarise(matrix, fleet.names, top)
    return InterferenceResult(matrix, list(fleet.names), mean_off, neg_share, conflicts, time.perf_counter() - start)


# ---- rows -------------------------------------------------------------------------------------------
def sample_blocks(fleet: Fleet, rows_per_dataset: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Up to R distinct rows of every dataset, drawn without replacement, in a (D, R) table.

    A dataset with fewer than R rows gets all of them and padding (row 0, weight 0), so each
    dataset's loss is the mean over its own real rows. Vectorised: shuffle all rows, stable-sort
    them by dataset, keep the first R of each."""
    d_of_row = fleet.dataset.cpu()
    n_sets, r = fleet.n_datasets, rows_per_dataset
    perm = torch.randperm(len(d_of_row), generator=generator)                            # (N,)
    order = perm[torch.argsort(d_of_row[perm], stable=True)]                             # (N,) grouped by dataset
    counts = torch.bincount(d_of_row, minlength=n_sets)                                  # (D,)
    d_sorted = d_of_row[order]
    rank = torch.arange(len(order)) - (torch.cumsum(counts, 0) - counts)[d_sorted]       # (N,) position in its dataset
    keep = rank < r
    rows = torch.zeros(n_sets, r, dtype=torch.long)
    weight = torch.zeros(n_sets, r)
    rows[d_sorted[keep], rank[keep]] = order[keep]
    weight[d_sorted[keep], rank[keep]] = 1.0
    device = fleet.x.device
    return rows.to(device), weight.to(device)


# ---- gradients --------------------------------------------------------------------------------------
def shared_parameters(model: FleetModel) -> dict[str, Tensor]:
    """The parameters every dataset shares: those of `model.target`, named as in `model`."""
    target = getattr(model, "target", None)
    if not isinstance(target, SharedTarget):
        raise ValueError(f"{model.kind!r} has no shared target network (one model per dataset shares no "
                         "parameters, so its interference is zero by construction)")
    return {f"target.{k}": v.detach() for k, v in target.named_parameters()}


def per_dataset_gradients(model: FleetModel, fleet: Fleet, rows: Tensor, weight: Tensor) -> Tensor:
    """(D, P): row d is the gradient, on the shared parameters, of dataset d's weighted mean loss
    over its block `rows[d]` (weights `weight[d]`, 0 for padding); a dataset without rows gets 0.

    One `vmap(grad(...))` over the D blocks. Inside, each block is a batch of one dataset (U=1):
    the model runs unchanged through `functional_call`. The embedding table is looked up outside,
    once, and handed in as the `Conditioning.emb` override, because its id check is data-dependent
    control flow that vmap cannot trace."""
    shared = shared_parameters(model)
    frozen = {k: v.detach() for k, v in [*model.named_parameters(), *model.named_buffers()]}
    was_training = model.training
    model.eval()
    try:
        emb = _embeddings(model, fleet.emb_ids)                                            # (D, E) or None
        group = torch.zeros(rows.shape[1], dtype=torch.long, device=rows.device)          # (R,) all in dataset 0

        def block_loss(params, x, mask, y, w, ids, meta, e):
            # x, mask: (R, F); y, w: (R,); ids: (); meta: (M,); e: (E,) or None -> loss ()
            cond = Conditioning(ids[None], meta[None], None if e is None else e[None])
            out, _ = functional_call(model, {**frozen, **params}, (x, mask, group, cond))  # (R, out)
            return (w * row_loss(fleet.task, out, y)).sum() / w.sum().clamp_min(1.0)

        in_dims = (None, 0, 0, 0, 0, 0, 0, None if emb is None else 0)
        with _vmappable_attention():
            grads = vmap(grad(block_loss), in_dims=in_dims)(
                shared, fleet.x[rows], fleet.mask[rows], fleet.y[rows], weight, fleet.emb_ids, fleet.meta, emb)
    finally:
        model.train(was_training)
    return torch.cat([grads[k].reshape(rows.shape[0], -1) for k in shared], dim=1)      # (D, P)


def row_loss(task: str, out: Tensor, y: Tensor) -> Tensor:
    """Per-row training loss (the same as `train.task_loss` before its mean): (R, out), (R,) -> (R,)."""
    if task == "regression":
        return (out[:, 0].float() - y).pow(2)
    return F.cross_entropy(out.float(), y, reduction="none")


def _embeddings(model: FleetModel, ids: Tensor) -> Tensor | None:
    tables = [m for m in model.modules() if isinstance(m, DatasetEmbedding)]
    if len(tables) > 1:
        raise ValueError(f"{model.kind!r} has {len(tables)} dataset embedding tables; expected at most one")
    return tables[0](ids).detach() if tables else None


@contextmanager
def _vmappable_attention():
    """The transformer encoder's fused kernels (the eval fast path, flash attention) have no vmap
    rule and would fall back to a slow per-dataset loop; the plain path with math attention
    computes the same thing from ops that vmap batches."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


# ---- cosines and summaries --------------------------------------------------------------------------
def gaussian_projection(n_params: int, proj_dim: int, generator: torch.Generator) -> Tensor:
    """(P, K) with N(0, 1/K) entries: inner products, hence cosines, are kept up to ~1/sqrt(K)."""
    return torch.randn(n_params, proj_dim, generator=generator) / proj_dim ** 0.5


def cosine_matrix(g: Tensor) -> Tensor:
    """(D, K) -> (D, D) float64 cosines; rows and columns of a zero gradient are NaN (undefined)."""
    g = g.double()
    norm = g.norm(dim=1)                                                                   # (D,)
    unit = g / norm.clamp_min(1e-300)[:, None]
    cos = (unit @ unit.T).clamp(-1.0, 1.0)
    zero = norm == 0
    cos[zero, :] = float("nan")
    cos[:, zero] = float("nan")
    return cos


def summarise(matrix: Tensor, names: list[str], top: int = 10) -> tuple[float, float, list[tuple[str, str, float]]]:
    """Mean off-diagonal cosine, share of negative pairs, and the `top` most negative pairs (i < j)."""
    i, j = torch.triu_indices(*matrix.shape, offset=1)
    vals = matrix[i, j]
    ok = ~torch.isnan(vals)
    i, j, vals = i[ok], j[ok], vals[ok]
    if len(vals) == 0:
        return float("nan"), float("nan"), []
    worst = torch.argsort(vals)[:top]
    conflicts = [(names[i[k]], names[j[k]], float(vals[k])) for k in worst if vals[k] < 0]
    return float(vals.mean()), float((vals < 0).double().mean()), conflicts
