"""`hypernet transfer` and `hypernet compare`: GEM-style transfer and version-to-version backward transfer."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flows.fleet_io import read_local_table
from flows.settings import Settings
from flows.tables import split_by_group
from hypernet_core import FleetEncoder, ModelConfig, TrainConfig, build_model, evaluate, holdout_tables, kfold_datasets
from hypernet_core.io import load_model
from hypernet_core.transfer import sequential_protocol, version_backward_transfer


def sequential_transfer(settings: Settings, console: Console, table: Path, group: str, target: str,
                        meta: list[str], task: str, stages: int, steps: int, kind: str) -> dict:
    """Train one model stage by stage over disjoint groups of datasets; fill R and report ACC/BWT/FWT."""
    tables = split_by_group(read_local_table(table), group, target, None, meta, task=task)
    train, test = holdout_tables(tables, 0.25, seed=settings.seed)
    enc = FleetEncoder.fit(train, task=task)
    order = kfold_datasets(len(tables), stages, seed=settings.seed)
    cfg = TrainConfig(max_steps=steps, seed=settings.seed, device=settings.resolve_device())
    make = lambda: build_model(kind, ModelConfig(), enc.n_features, enc.meta_dim, enc.out_dim, len(train),  # noqa: E731
                               seed=settings.seed)
    result = sequential_protocol(make, order, enc.transform(train), enc.transform(test), cfg)
    report = result.to_dict() | {"kind": kind, "table": str(table)}
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    (settings.reports_dir / f"transfer-{kind}.json").write_text(json.dumps(report, indent=2, default=float))
    grid = Table(title=f"R[i, j]: mean per-dataset {result.metric} on stage j after training stage i", title_justify="left")
    grid.add_column("after stage")
    for j in range(len(order)):
        grid.add_column(f"stage {j + 1}", justify="right")
    for i, row in enumerate(result.R.tolist()):
        grid.add_row(str(i + 1), *[f"{v:.3f}" for v in row])
    console.print(grid)
    gem = result.gem()
    console.print(f"ACC {gem['ACC']:.3f}  BWT {gem['BWT']:.3f}  FWT {gem['FWT']:.3f}  ({gem['normalisation']})")
    return report


def compare_versions(settings: Settings, console: Console, new_dir: Path, old_dir: Path, table: Path, group: str,
                     target: str, meta: list[str]) -> dict:
    """Backward transfer between model versions: the new model against the old on datasets both know."""
    new, new_enc, _ = load_model(new_dir)
    old, old_enc, _ = load_model(old_dir)
    tables = split_by_group(read_local_table(table), group, target, None, meta, task=new_enc.task)
    common = [t for t in tables if t.name in new_enc.datasets and t.name in old_enc.datasets]
    if not common:
        raise ValueError(f"no dataset of {table} is known to both models; nothing to compare")
    result = version_backward_transfer(evaluate(new, new_enc.transform(common, known=True)),
                                       evaluate(old, old_enc.transform(common, known=True)))
    console.print(f"{result['n_common']} datasets both versions know: mean change {result['mean_delta']:+.4f} "
                  f"{result['metric']}, {result['n_worse']} worse; worst: "
                  + ", ".join(f"{n} {d:+.3f}" for n, d in result["worst"]))
    return result
