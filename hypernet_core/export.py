"""Generated weights for one dataset, as a standalone model: safetensors + what is needed to use it.

`generate(...)` turns a trained hypernetwork and a new dataset's meta-features (and, optionally, a few
labelled rows) into the full weights of the target network. The file carries the feature order, the
scalers and the layer layout in its metadata, so `GeneratedModel.load(path).predict(x)` works without
the hypernetwork, the training data or this package's training code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from hypernet_core.adapt import adapt, zero_shot_embeddings
from hypernet_core.fleet import DatasetTable, FleetEncoder, Scalar
from hypernet_core.model import Conditioning, HyperNetwork


@dataclass
class GeneratedModel:
    weights: dict[str, Tensor]   # "layers.{l}.weight" (out, in), "layers.{l}.bias" (out,), "norms.*"
    spec: dict                   # features, scalers, task, classes, activation, n_layers, how it was made

    def predict(self, x: np.ndarray) -> np.ndarray:
        """x: (N, F) raw feature values in `spec['features']` order, NaN for missing.
        Returns (N,) predictions in the target's units, or class labels for classification."""
        s = self.spec
        x = np.asarray(x, dtype=np.float64)
        observed = ~np.isnan(x)
        z = np.where(observed, (x - np.asarray(s["feature_mean"])) / np.asarray(s["feature_std"]), 0.0)
        h = torch.tensor(np.concatenate([z, observed], axis=1), dtype=torch.float32)
        act = F.gelu if s["activation"] == "gelu" else F.relu
        with torch.no_grad():
            for l in range(s["n_layers"]):
                h = F.linear(h, self.weights[f"layers.{l}.weight"], self.weights[f"layers.{l}.bias"])
                if l < s["n_layers"] - 1:
                    if f"norms.{l}.running_mean" in self.weights:
                        w = self.weights
                        h = F.batch_norm(h, w[f"norms.{l}.running_mean"], w[f"norms.{l}.running_var"],
                                         w[f"norms.{l}.weight"], w[f"norms.{l}.bias"], training=False)
                    h = act(h)
        if s["task"] == "regression":
            return h[:, 0].numpy() * s["target_std"] + s["target_mean"]
        return np.asarray(s["classes"], dtype=object)[h.argmax(1).numpy()]

    def save(self, path) -> None:
        """One safetensors file; the spec travels in its string metadata (nothing is pickled)."""
        save_file({k: v.contiguous() for k, v in self.weights.items()}, str(path), metadata={"spec": json.dumps(self.spec)})

    @classmethod
    def load(cls, path) -> "GeneratedModel":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            spec = json.loads(fh.metadata()["spec"])
        return cls(load_file(str(path)), spec)


def generate(model: HyperNetwork, enc: FleetEncoder, name: str, meta: dict[str, Scalar],
             rows: DatasetTable | None = None, seed: int = 0) -> GeneratedModel:
    """Weights for a dataset the model has never seen: zero-shot from `meta`, few-shot with `rows`."""
    meta_vec = torch.tensor(enc.encode_meta(name, meta), dtype=torch.float32).view(1, -1)
    emb, how = zero_shot_embeddings(model, 1), "zero-shot"
    if rows is not None and rows.n_rows > 0:
        fleet = enc.transform([DatasetTable(name, rows.features, rows.target, meta)], known=False)
        adaptation = adapt(model, fleet, seed=seed)
        emb = adaptation.emb
        how = f"few-shot ({rows.n_rows} rows)" if adaptation.few_shot[0] else f"zero-shot (kept over {rows.n_rows} rows)"
    model.eval()
    weights = model.generate_weights(Conditioning(torch.tensor([-1]), meta_vec, emb))[0]
    spec = {"dataset": name, "how": how, "meta": meta, "task": enc.task, "features": enc.features,
            "feature_mean": enc.feature_mean, "feature_std": enc.feature_std, "target_mean": enc.target_mean,
            "target_std": enc.target_std, "classes": enc.classes, "activation": model.cfg.activation,
            "n_layers": len(model.target.layers), "input": "standardised features (missing -> 0) ⊕ observed mask"}
    return GeneratedModel({k: v.detach().cpu() for k, v in weights.items()}, spec)
