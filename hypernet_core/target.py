"""The shared target network and the generated updates applied to it.

The target is a plain MLP whose layers have shared base weights. A generated layer adds, for every
row, the update of that row's dataset. Updates are generated once per *distinct* dataset in the
batch (U of them) and gathered per row with `group` (B,), so a batch mixing many datasets costs a
few batched matrix products and no Python loop over datasets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# Above this many multiply-adds per row block, gathering per-row weights is cheaper than the dense path.
DENSE_LIMIT = 2**22


@dataclass
class LayerUpdate:
    """Per-dataset update of one layer: either full `weight` or low-rank `a @ b`, plus a bias."""

    bias: Tensor                 # (U, out)
    weight: Tensor | None = None  # (U, out, in)
    a: Tensor | None = None       # (U, out, r)
    b: Tensor | None = None       # (U, r, in)

    def apply(self, h: Tensor, group: Tensor) -> Tensor:
        # h: (B, in), group: (B,) index into U -> (B, out)
        n_rows, n_sets = h.shape[0], self.bias.shape[0]
        inner = self.b.shape[1] if self.weight is None else self.weight.shape[1]
        if n_rows * n_sets * inner <= DENSE_LIMIT:
            return self._apply_dense(h, group)
        if self.weight is not None:
            out = torch.einsum("bi,boi->bo", h, self.weight[group])
        else:
            t = torch.einsum("bi,bri->br", h, self.b[group])           # (B, r)
            out = torch.einsum("br,bor->bo", t, self.a[group])         # (B, out)
        return out + self.bias[group]

    def _apply_dense(self, h: Tensor, group: Tensor) -> Tensor:
        """Every row against every dataset's factors, masked to its own: a few dense matmuls instead
        of a per-row gather, whose scatter-add backward dominates a training step on CPU."""
        n_rows, n_sets = h.shape[0], self.bias.shape[0]
        onehot = F.one_hot(group, n_sets).to(h.dtype)                                  # (B, U)
        if self.weight is not None:
            n_out, n_in = self.weight.shape[1:]
            t = (h @ self.weight.reshape(n_sets * n_out, n_in).T).view(n_rows, n_sets, n_out)  # (B, U, out)
            return torch.einsum("buo,bu->bo", t, onehot) + onehot @ self.bias
        rank, n_out = self.b.shape[1], self.a.shape[1]
        t = (h @ self.b.reshape(n_sets * rank, -1).T).view(n_rows, n_sets, rank) * onehot[:, :, None]  # (B, U, r)
        a = self.a.permute(0, 2, 1).reshape(n_sets * rank, n_out)                      # (U*r, out)
        return t.view(n_rows, n_sets * rank) @ a + onehot @ self.bias                  # (B, out)

    def dense(self) -> Tensor:
        return self.weight if self.weight is not None else self.a @ self.b  # (U, out, in)

    def penalty(self) -> Tensor:
        """Mean over datasets of the squared size of the update (keeps datasets close to the shared model)."""
        return self.dense().pow(2).sum((1, 2)).mean() + self.bias.pow(2).sum(1).mean()


class SharedTarget(nn.Module):
    """MLP with sizes [in, *hidden, out]; `updates` maps layer index -> LayerUpdate."""

    def __init__(self, sizes: list[int], activation: str = "gelu", dropout: float = 0.0,
                 norm_layers: frozenset[int] = frozenset()):
        super().__init__()
        self.sizes = sizes
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.drop = nn.Dropout(dropout)
        hidden = range(len(self.layers) - 1)
        self.norms = nn.ModuleDict({str(l): nn.BatchNorm1d(sizes[l + 1]) for l in norm_layers if l in hidden})

    def forward(self, x: Tensor, updates: dict[int, LayerUpdate] | None = None, group: Tensor | None = None) -> Tensor:
        h = x                                                          # (B, in)
        last = len(self.layers) - 1
        for l, layer in enumerate(self.layers):
            out = layer(h)                                             # (B, sizes[l+1])
            if updates and l in updates:
                out = out + updates[l].apply(h, group)
            if l < last:
                if str(l) in self.norms:
                    out = self.norms[str(l)](out)
                out = self.drop(self.act(out))
            h = out
        return h                                                       # (B, out)


class StackedTarget(nn.Module):
    """D independent MLPs stored as stacked tensors: one model per dataset, run in one batched pass."""

    def __init__(self, n_models: int, sizes: list[int], activation: str = "gelu"):
        super().__init__()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, o in zip(sizes[:-1], sizes[1:]):
            bound = 1 / math.sqrt(i)  # nn.Linear's default initialisation, per model
            self.weights.append(nn.Parameter(torch.empty(n_models, o, i).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n_models, o).uniform_(-bound, bound)))
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()

    def forward(self, x: Tensor, model_of_row: Tensor) -> Tensor:
        h = x                                                           # (B, in)
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.einsum("bi,boi->bo", h, w[model_of_row]) + b[model_of_row]
            if l < len(self.weights) - 1:
                h = self.act(h)
        return h


def dense_layer(target: SharedTarget, l: int, update: LayerUpdate | None, u: int) -> tuple[Tensor, Tensor]:
    """Full weight and bias of layer l for dataset u: shared base plus its update (for export and tests)."""
    w, b = target.layers[l].weight, target.layers[l].bias
    if update is None:
        return w, b
    return w + update.dense()[u], b + update.bias[u]
