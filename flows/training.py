"""`hypernet train`: a user's own table -> compared, saved hypernetwork."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from rich.console import Console

from flows import experiment
from flows.report import print_report, verdict, write_report
from flows.settings import Settings
from flows.tables import split_by_group
from hypernet_core import FleetEncoder, ModelConfig, TrainConfig, holdout_tables
from hypernet_core.io import save_model


def read_table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    return pd.read_csv(path)


def train_table(settings: Settings, console: Console, table: Path, group: str, target: str, features: list[str],
                meta: list[str], task: str, baselines: bool, steps: int, name: str) -> dict:
    start = time.perf_counter()
    tables = split_by_group(read_table(table), group, target, features, meta, task=task)
    console.print(f"{table.name}: {sum(t.n_rows for t in tables):,} rows in {len(tables)} datasets")
    mcfg = ModelConfig()
    tcfg = TrainConfig(max_steps=steps, seed=settings.seed, device=settings.resolve_device())
    kinds = experiment.KINDS if baselines else ("hypernetwork",)
    seen = experiment.run_seen(tables, kinds, mcfg, tcfg, task=task)
    report = {"fleet": table.name, "metric": "r2" if task == "regression" else "accuracy",
              "models": {k: {"seen": r.seen, "params": r.params, "seconds": r.seconds, "steps": r.steps,
                             "per_dataset_seen": r.per_dataset} for k, r in seen.items()}}
    report["verdict"] = verdict(report)

    # The saved model learns from every row; early stopping still uses its own validation share.
    enc = FleetEncoder.fit(tables, task=task)
    model, _ = experiment.train_one("hypernetwork", tables, enc, mcfg, tcfg)
    folder = save_model(settings.models_dir / name, model, enc, mcfg, extra={"trained_on": table.name})
    report["seconds"] = time.perf_counter() - start
    write_report(report, settings.reports_dir, f"train-{name}")
    print_report(report, f"{table.name}: held-out rows (25 % of each dataset)", console)
    console.print(f"Model saved to {folder}")
    return report
