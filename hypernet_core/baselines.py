"""Baselines behind the same interface and training budget as the hypernetwork.

- PooledModel: one model for all datasets (ignores which dataset a row comes from).
- PerDatasetModel: one independent model per dataset, stored stacked and run in one batched pass;
  each model only ever receives gradients from its own dataset's rows, so this is the same as
  training them separately. It cannot predict for datasets it has never seen.
- TaskConditionedModel: one shared model whose input carries the dataset embedding and meta-features.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hypernet_core.conditioning import DatasetEmbedding
from hypernet_core.config import ModelConfig
from hypernet_core.fleet import UNKNOWN
from hypernet_core.model import Conditioning, FleetModel
from hypernet_core.target import SharedTarget, StackedTarget


def _inputs(x: Tensor, mask: Tensor) -> Tensor:
    return torch.cat([x * mask, mask], dim=-1)  # (B, 2F)


class PooledModel(FleetModel):
    kind = "pooled"

    def __init__(self, cfg: ModelConfig, n_features: int, meta_dim: int, out_dim: int, n_datasets: int):
        super().__init__()
        self.target = SharedTarget([2 * n_features, *cfg.hidden, out_dim], cfg.activation, cfg.dropout)

    def forward(self, x, mask, group, cond: Conditioning):
        return self.target(_inputs(x, mask)), x.new_zeros(())


class PerDatasetModel(FleetModel):
    kind = "per_dataset"
    supports_unseen = False

    def __init__(self, cfg: ModelConfig, n_features: int, meta_dim: int, out_dim: int, n_datasets: int):
        super().__init__()
        self.target = StackedTarget(n_datasets, [2 * n_features, *cfg.hidden, out_dim], cfg.activation)

    def forward(self, x, mask, group, cond: Conditioning):
        if (cond.ids == UNKNOWN).any():
            raise ValueError("one model per dataset cannot predict for a dataset it was not trained on")
        return self.target(_inputs(x, mask), cond.ids[group]), x.new_zeros(())

    def parameter_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        n_models = self.target.weights[0].shape[0]
        return {"total": total, "per_model": total // n_models}


class TaskConditionedModel(FleetModel):
    kind = "task_conditioned"

    def __init__(self, cfg: ModelConfig, n_features: int, meta_dim: int, out_dim: int, n_datasets: int):
        super().__init__()
        self.embedding = DatasetEmbedding(n_datasets, cfg.embed_dim, cfg.embed_dropout)
        sizes = [2 * n_features + cfg.embed_dim + meta_dim, *cfg.hidden, out_dim]
        self.target = SharedTarget(sizes, cfg.activation, cfg.dropout)

    def forward(self, x, mask, group, cond: Conditioning):
        emb = cond.emb if cond.emb is not None else self.embedding(cond.ids)      # (U, E)
        task = torch.cat([emb, cond.meta], dim=-1)[group]                          # (B, E+M)
        return self.target(torch.cat([_inputs(x, mask), task], dim=-1)), x.new_zeros(())


MODELS = {cls.kind: cls for cls in (PooledModel, PerDatasetModel, TaskConditionedModel)}


def build_model(kind: str, cfg: ModelConfig, n_features: int, meta_dim: int, out_dim: int,
                n_datasets: int, seed: int | None = 0) -> FleetModel:
    """Any model of the fleet by name: 'hypernetwork' or one of the baselines.

    Initialisation is seeded (`seed=None` leaves torch's global generator as it is), so the same
    command gives the same model."""
    from hypernet_core.model import HyperNetwork

    if seed is not None:
        torch.manual_seed(seed)
    registry = {"hypernetwork": HyperNetwork, **MODELS}
    if kind not in registry:
        raise ValueError(f"unknown model {kind!r}: choose from {sorted(registry)}")
    return registry[kind](cfg, n_features, meta_dim, out_dim, n_datasets)
