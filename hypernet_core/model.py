"""The hypernetwork: conditioning -> generated updates -> shared target network, in one batched pass."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from hypernet_core.conditioning import Conditioner
from hypernet_core.config import ModelConfig
from hypernet_core.target import LayerUpdate, SharedTarget, dense_layer


class Conditioning(NamedTuple):
    """Who the U distinct datasets of a batch are."""

    ids: Tensor                 # (U,) embedding rows; UNKNOWN (-1) for datasets never seen
    meta: Tensor                # (U, M) encoded meta-features
    emb: Tensor | None = None   # (U, E) embeddings that override the table (few-shot adaptation)


class LayerHead(nn.Module):
    """z -> the update of one target layer. Output layers start at zero, so at step 0 every dataset
    gets exactly the shared weights. For low rank only `a` is zeroed: with both factors at zero no
    gradient could ever reach either (the LoRA trick)."""

    def __init__(self, cond_dim: int, n_in: int, n_out: int, generation: str, rank: int):
        super().__init__()
        self.n_in, self.n_out, self.rank, self.generation = n_in, n_out, rank, generation
        self.bias = _zero(nn.Linear(cond_dim, n_out))
        if generation == "full":
            self.weight = _zero(nn.Linear(cond_dim, n_out * n_in))
        elif generation == "lowrank":
            self.a = _zero(nn.Linear(cond_dim, n_out * rank))
            self.b = nn.Linear(cond_dim, rank * n_in)
        else:
            raise ValueError(f"unknown generation {generation!r}: use 'lowrank' or 'full'")

    def forward(self, z: Tensor) -> LayerUpdate:
        u = z.shape[0]                                                   # z: (U, C)
        if self.generation == "full":
            return LayerUpdate(bias=self.bias(z), weight=self.weight(z).view(u, self.n_out, self.n_in))
        return LayerUpdate(bias=self.bias(z),
                           a=self.a(z).view(u, self.n_out, self.rank),  # (U, out, r)
                           b=self.b(z).view(u, self.rank, self.n_in))   # (U, r, in)


def _zero(layer: nn.Linear) -> nn.Linear:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def generated_layers(cfg: ModelConfig, n_layers: int) -> frozenset[int]:
    choice = {"first": {0}, "last": {n_layers - 1}, "all": set(range(n_layers))}
    if cfg.generate not in choice:
        raise ValueError(f"unknown generate={cfg.generate!r}: use 'first', 'last' or 'all'")
    return frozenset(choice[cfg.generate])


class FleetModel(nn.Module):
    """What every model of the fleet offers the trainer (the hypernetwork and the baselines)."""

    kind = "model"
    supports_unseen = True  # can it predict for a dataset it has never seen?

    def forward(self, x: Tensor, mask: Tensor, group: Tensor, cond: Conditioning) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def hyper_parameters(self) -> list[nn.Parameter]:
        """Parameters frozen during the warm-up (empty for models without a hypernetwork)."""
        return []

    def parameter_counts(self) -> dict[str, int]:
        return {"total": sum(p.numel() for p in self.parameters())}


class HyperNetwork(FleetModel):
    kind = "hypernetwork"

    def __init__(self, cfg: ModelConfig, n_features: int, meta_dim: int, out_dim: int, n_datasets: int):
        super().__init__()
        self.cfg = cfg
        sizes = [2 * n_features, *cfg.hidden, out_dim]  # input: values ⊕ observed-mask
        self.generated = generated_layers(cfg, len(sizes) - 1)
        norm = self.generated if cfg.batchnorm else frozenset()
        self.target = SharedTarget(sizes, cfg.activation, cfg.dropout, norm)
        self.conditioner = Conditioner(cfg, n_datasets, meta_dim)
        self.heads = nn.ModuleDict({
            str(l): LayerHead(cfg.cond_dim, sizes[l], sizes[l + 1], cfg.generation, cfg.rank) for l in self.generated
        })

    def updates(self, cond: Conditioning) -> dict[int, LayerUpdate]:
        z = self.conditioner(cond.ids, cond.meta, cond.emb)               # (U, C)
        return {int(l): head(z) for l, head in self.heads.items()}

    def forward(self, x: Tensor, mask: Tensor, group: Tensor, cond: Conditioning) -> tuple[Tensor, Tensor]:
        # x, mask: (B, F); group: (B,) index into the U datasets of `cond` -> pred (B, out), penalty ()
        updates = self.updates(cond)
        pred = self.target(torch.cat([x * mask, mask], dim=-1), updates, group)
        penalty = sum(u.penalty() for u in updates.values())
        return pred, penalty

    def hyper_parameters(self) -> list[nn.Parameter]:
        return [*self.conditioner.parameters(), *self.heads.parameters()]

    def parameter_counts(self) -> dict[str, int]:
        target = sum(p.numel() for p in self.target.parameters())
        hyper = sum(p.numel() for p in self.hyper_parameters())
        return {"target": target, "hypernetwork": hyper, "total": target + hyper}

    @torch.no_grad()
    def generate_weights(self, cond: Conditioning) -> list[dict[str, Tensor]]:
        """Full target-network weights for each of the U datasets (state-dict style names)."""
        updates = self.updates(cond)
        out = []
        for u in range(cond.meta.shape[0]):
            weights = {}
            for l in range(len(self.target.layers)):
                w, b = dense_layer(self.target, l, updates.get(l), u)
                weights[f"layers.{l}.weight"], weights[f"layers.{l}.bias"] = w.clone(), b.clone()
            for name, t in self.target.norms.state_dict().items():  # BatchNorm statistics are shared
                weights[f"norms.{name}"] = t.clone()
            out.append(weights)
        return out
