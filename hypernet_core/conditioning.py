"""Conditioning: who is this dataset? -> a vector z that the weight generator reads.

z = encoder(embedding(dataset) ⊕ meta-features). The embedding table has one extra learned row,
"unknown", used for datasets the model has never seen; swapping a known dataset's embedding for it
at random during training (embedding dropout) teaches the generator to work from meta-features alone.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hypernet_core.config import ModelConfig
from hypernet_core.fleet import UNKNOWN


class DatasetEmbedding(nn.Module):
    def __init__(self, n_datasets: int, dim: int, dropout: float):
        super().__init__()
        self.n_datasets, self.dropout = n_datasets, dropout
        self.table = nn.Embedding(n_datasets + 1, dim)  # last row: the "unknown dataset" embedding
        nn.init.normal_(self.table.weight, std=0.1)

    def forward(self, ids: Tensor) -> Tensor:
        # ids: (U,) int64 embedding rows, UNKNOWN (-1) for unseen datasets -> (U, E)
        if (ids >= self.n_datasets).any() or (ids < UNKNOWN).any():
            bad = ids[(ids >= self.n_datasets) | (ids < UNKNOWN)][0].item()
            raise IndexError(f"unknown dataset id {bad}: the model knows ids 0..{self.n_datasets - 1} "
                             f"(use {UNKNOWN} for a dataset it has never seen)")
        ids = torch.where(ids == UNKNOWN, self.n_datasets, ids)
        if self.training and self.dropout > 0:
            drop = torch.rand(ids.shape, device=ids.device) < self.dropout
            ids = torch.where(drop, self.n_datasets, ids)
        return self.table(ids)

    @property
    def unknown(self) -> Tensor:
        return self.table.weight[self.n_datasets]  # (E,)


class MLPEncoder(nn.Module):
    """(emb ⊕ meta) -> z with a two-layer MLP: the default, cheap and strong on tabular meta-features."""

    def __init__(self, in_dim: int, cond_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, cond_dim), nn.GELU(), nn.Linear(cond_dim, cond_dim), nn.GELU())

    def forward(self, emb: Tensor, meta: Tensor) -> Tensor:
        return self.net(torch.cat([emb, meta], dim=-1))  # (U, E+M) -> (U, C)


class TransformerEncoder(nn.Module):
    """Meta-features as tokens (one per value, FT-Transformer style) plus an embedding token and a
    summary token; self-attention lets meta-features interact. Read out at the summary token."""

    def __init__(self, embed_dim: int, meta_dim: int, cond_dim: int, layers: int = 2, heads: int = 4):
        super().__init__()
        d = cond_dim
        self.value_scale = nn.Parameter(torch.randn(meta_dim, d) * 0.1)  # token_j = m_j * scale_j + shift_j
        self.value_shift = nn.Parameter(torch.zeros(meta_dim, d))
        self.emb_proj = nn.Linear(embed_dim, d)
        self.summary = nn.Parameter(torch.zeros(1, 1, d))
        block = nn.TransformerEncoderLayer(d, heads, dim_feedforward=2 * d, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)

    def forward(self, emb: Tensor, meta: Tensor) -> Tensor:
        meta_tokens = meta.unsqueeze(-1) * self.value_scale + self.value_shift      # (U, M, C)
        emb_token = self.emb_proj(emb).unsqueeze(1)                                  # (U, 1, C)
        summary = self.summary.expand(emb.shape[0], -1, -1)                          # (U, 1, C)
        tokens = torch.cat([summary, emb_token, meta_tokens], dim=1)                 # (U, 2+M, C)
        return self.encoder(tokens)[:, 0]                                            # (U, C)


class Conditioner(nn.Module):
    def __init__(self, cfg: ModelConfig, n_datasets: int, meta_dim: int):
        super().__init__()
        self.embedding = DatasetEmbedding(n_datasets, cfg.embed_dim, cfg.embed_dropout)
        if cfg.encoder == "mlp":
            self.encoder: nn.Module = MLPEncoder(cfg.embed_dim + meta_dim, cfg.cond_dim)
        elif cfg.encoder == "transformer":
            self.encoder = TransformerEncoder(cfg.embed_dim, meta_dim, cfg.cond_dim)
        else:
            raise ValueError(f"unknown encoder {cfg.encoder!r}: use 'mlp' or 'transformer'")

    def forward(self, ids: Tensor, meta: Tensor, emb: Tensor | None = None) -> Tensor:
        # ids: (U,), meta: (U, M), emb: optional (U, E) override (few-shot fitted embeddings) -> z (U, C)
        if emb is None:
            emb = self.embedding(ids)
        return self.encoder(emb, meta)
