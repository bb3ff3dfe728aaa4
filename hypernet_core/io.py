"""Saving and loading trained models: tensors in safetensors, everything else in JSON.

Nothing is unpickled on load, so a model file from anywhere is safe to open.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from hypernet_core.baselines import build_model
from hypernet_core.config import ModelConfig
from hypernet_core.fleet import FleetEncoder
from hypernet_core.model import FleetModel

WEIGHTS, SPEC = "model.safetensors", "model.json"


def save_model(folder: str | Path, model: FleetModel, encoder: FleetEncoder, cfg: ModelConfig,
               extra: dict | None = None) -> Path:
    """Write `model.safetensors` and `model.json` into `folder`, each atomically (temp file + rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic(folder / WEIGHTS, lambda tmp: save_file(tensors, tmp))
    spec = {"kind": model.kind, "model_config": cfg.to_dict(), "encoder": encoder.to_dict(),
            "parameter_counts": model.parameter_counts(), **(extra or {})}
    _atomic(folder / SPEC, lambda tmp: Path(tmp).write_text(json.dumps(spec, indent=2)))
    return folder


def load_model(folder: str | Path, device: str = "cpu") -> tuple[FleetModel, FleetEncoder, dict]:
    folder = Path(folder)
    spec = json.loads((folder / SPEC).read_text())
    enc = FleetEncoder.from_dict(spec["encoder"])
    cfg = ModelConfig.from_dict(spec["model_config"])
    model = build_model(spec["kind"], cfg, enc.n_features, enc.meta_dim, enc.out_dim, len(enc.datasets), seed=None)
    model.load_state_dict(load_file(folder / WEIGHTS, device=device))
    return model.to(device).eval(), enc, spec


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def state_equal(a: FleetModel, b: FleetModel) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)
