"""`hypernet train`: a user's own table -> compared, saved hypernetwork.

Resumable: with a checkpoint folder, every fit checkpoints each epoch (in `<folder>/seen/<model>` and
`<folder>/final/hypernetwork`); running the same command again after a crash resumes where it stopped
and ends with the same numbers. Distributed: the same command under torchrun trains every model with
DDP across the processes; only rank 0 prints, writes the report and saves the model.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from flows import experiment
from flows.fleet_io import read_local_table
from flows.report import print_report, verdict, write_report
from flows.settings import Settings
from flows.tables import split_by_group
from hypernet_core import FleetEncoder, ModelConfig, TrainConfig, distributed
from hypernet_core.io import save_model


def train_table(settings: Settings, console: Console, table: Path, group: str, target: str, features: list[str],
                meta: list[str], task: str, baselines: bool, steps: int, name: str,
                checkpoint_dir: Path | None = None, checkpoint_every: int = 1) -> dict:
    start = time.perf_counter()
    where = distributed.init()  # a world of one unless started by torchrun
    if not where.is_main:
        console = Console(quiet=True)
    device = distributed.resolve_device(settings.resolve_device(), where)
    tables = split_by_group(read_local_table(table), group, target, features, meta, task=task)
    console.print(f"{table.name}: {sum(t.n_rows for t in tables):,} rows in {len(tables)} datasets"
                  + (f", training in {where.world_size} processes" if where.enabled else ""))
    mcfg = ModelConfig()
    tcfg = TrainConfig(max_steps=steps, seed=settings.seed, device=str(device), checkpoint_every=checkpoint_every,
                       checkpoint_dir=str(Path(checkpoint_dir) / "seen") if checkpoint_dir else None)
    kinds = experiment.KINDS if baselines else ("hypernetwork",)
    seen = experiment.run_seen(tables, kinds, mcfg, tcfg, task=task)
    report = {"fleet": table.name, "metric": "r2" if task == "regression" else "accuracy",
              "models": {k: {"seen": r.seen, "params": r.params, "seconds": r.seconds, "steps": r.steps,
                             "per_dataset_seen": r.per_dataset} for k, r in seen.items()},
              "processes": where.world_size}
    report["verdict"] = verdict(report)

    # The saved model learns from every row; early stopping still uses its own validation share.
    enc = FleetEncoder.fit(tables, task=task)
    final_cfg = replace(tcfg, checkpoint_dir=str(Path(checkpoint_dir) / "final") if checkpoint_dir else None)
    model, _ = experiment.train_one("hypernetwork", tables, enc, mcfg, final_cfg)
    report["seconds"] = time.perf_counter() - start
    if where.is_main:
        folder = save_model(settings.models_dir / name, model, enc, mcfg, extra={"trained_on": table.name})
        write_report(report, settings.reports_dir, f"train-{name}")
        print_report(report, f"{table.name}: held-out rows (25 % of each dataset)", console)
        console.print(f"Model saved to {folder}")
    distributed.barrier()  # the others wait until the model is saved
    return report
