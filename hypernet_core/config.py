"""Configuration of the hypernetwork and of training (plain dataclasses, JSON-serialisable)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal


@dataclass
class ModelConfig:
    hidden: tuple[int, ...] = (64, 64)      # hidden widths of the shared target MLP
    activation: Literal["relu", "gelu"] = "gelu"
    embed_dim: int = 16                     # learned per-dataset embedding
    cond_dim: int = 64                      # width of the conditioning vector z
    encoder: Literal["mlp", "transformer"] = "mlp"
    generate: Literal["first", "last", "all"] = "first"  # which target layers get generated weights
    generation: Literal["lowrank", "full"] = "lowrank"
    rank: int = 4                           # rank of the generated update when generation="lowrank"
    batchnorm: bool = False                 # BatchNorm1d after generated hidden layers
    embed_dropout: float = 0.2              # chance a dataset's embedding is swapped for "unknown" in training
    dropout: float = 0.0                    # dropout on target-network hidden activations

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)


@dataclass
class TrainConfig:
    max_steps: int = 600              # optimiser steps
    datasets_per_batch: int = 32      # distinct datasets in one micro-batch (dataset-balanced sampling)
    rows_per_dataset: int = 8         # rows drawn from each of them
    accumulate: int = 4               # micro-batches (each a different set of datasets) per optimiser step
    warmup_frac: float = 0.15         # share of steps that train only the shared layers (hypernetwork frozen)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    update_l2: float = 1e-3           # L2 penalty on the generated weight updates
    val_frac: float = 0.15            # share of each dataset's rows held for early stopping
    eval_every: int = 25
    patience: int = 8                 # evaluations without improvement before stopping
    seed: int = 0
    device: str = "cpu"
    bf16: bool = True                 # autocast to bfloat16 on CUDA (ignored on CPU)
    progress: bool = True
    checkpoint_every: int = 1         # epochs between checkpoints when checkpointing (0: only at the end)
    checkpoint_dir: str | None = None  # checkpoint (and resume) each fit in <checkpoint_dir>/<label or model kind>
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
