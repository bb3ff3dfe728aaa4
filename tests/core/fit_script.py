"""A real training process for the checkpoint and distributed tests (not collected by pytest).

    python tests/core/fit_script.py OUT [--checkpoint-dir DIR] [--sleep S] [--kind K] ...
    torchrun --standalone --nproc_per_node=2 tests/core/fit_script.py OUT ...

Trains on a fixed synthetic fleet, scores the held-out rows, and writes (rank 0) OUT/result.json and
OUT/state.safetensors; every rank writes OUT/rank<r>.json with a digest of its final parameters.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import hypernet_core.train as train_module  # noqa: E402
from hypernet_core import (FleetEncoder, ModelConfig, TrainConfig, build_model, evaluate, fit,  # noqa: E402
                           holdout_tables)
from hypernet_core import distributed  # noqa: E402
from hypernet_core.synthetic import synthetic_fleet  # noqa: E402


def build(kind: str = "hypernetwork", datasets: int = 24, steps: int = 150, patience: int = 6,
          datasets_per_batch: int = 16, accumulate: int = 2, seed: int = 0, warmup_frac: float = 0.15,
          device: str = "cpu"):
    """The model, training settings, training fleet and held-out fleet of this script."""
    tables = synthetic_fleet(datasets, rows=(40, 120), n_features=4, seed=3)
    train_tables, test_tables = holdout_tables(tables, 0.3, seed=0)
    enc = FleetEncoder.fit(train_tables)
    model = build_model(kind, ModelConfig(hidden=(32,)), enc.n_features, enc.meta_dim, enc.out_dim,
                        len(train_tables), seed=seed)
    cfg = TrainConfig(max_steps=steps, eval_every=10, patience=patience, progress=False,
                      datasets_per_batch=datasets_per_batch, rows_per_dataset=8, accumulate=accumulate,
                      seed=seed, warmup_frac=warmup_frac, device=device)
    return model, cfg, enc.transform(train_tables), enc.transform(test_tables)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--checkpoint-dir", type=Path)
    ap.add_argument("--kind", default="hypernetwork")
    ap.add_argument("--datasets", type=int, default=24)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--patience", type=int, default=6)
    ap.add_argument("--datasets-per-batch", type=int, default=16)
    ap.add_argument("--accumulate", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup-frac", type=float, default=0.15)
    ap.add_argument("--sleep", type=float, default=0.0, help="seconds to wait after each step (to be killed)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, cuda (one GPU per process under torchrun)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.sleep:
        step = train_module.train_step

        def slow_step(*a, **kw):
            loss = step(*a, **kw)
            time.sleep(args.sleep)
            return loss

        train_module.train_step = slow_step

    model, cfg, train_fleet, test_fleet = build(args.kind, args.datasets, args.steps, args.patience,
                                                args.datasets_per_batch, args.accumulate, args.seed, args.warmup_frac,
                                                args.device)
    result = fit(model, train_fleet, cfg, checkpoint_dir=args.checkpoint_dir)
    ev = evaluate(model, test_fleet)

    where = distributed.info()
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    (args.out / f"rank{where.rank}.json").write_text(json.dumps({"digest": digest, "r2": ev.overall}))
    if where.is_main:
        save_file(state, str(args.out / "state.safetensors"))
        (args.out / "result.json").write_text(json.dumps({
            "r2": ev.overall, "steps": result.steps, "best_val_loss": result.best_val_loss,
            "history": result.history, "resumed_from": result.resumed_from,
            "steps_per_epoch": result.steps_per_epoch, "world_size": where.world_size, "seconds": result.seconds,
        }))
    distributed.shutdown()


if __name__ == "__main__":
    main()
