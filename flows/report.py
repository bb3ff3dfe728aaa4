"""The comparison table users read: Rich on the terminal, the same numbers as JSON in the workspace."""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

LABELS = {
    "hypernetwork": "hypernetwork (ours)",
    "pooled": "pooled model",
    "per_dataset": "one model per dataset",
    "task_conditioned": "task-conditioned shared model",
    "ridge_pooled": "ridge, pooled",
    "ridge_one_hot": "ridge + dataset one-hot",
    "ridge_meta": "ridge + meta-features",
    "mixed_effects": "mixed-effects (random intercept + slope)",
}


def _fmt(v, spec: str = ".3f") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def comparison_table(report: dict, title: str) -> Table:
    metric = report.get("metric", "r2").upper() if report.get("metric") != "r2" else "R²"
    table = Table(title=title, title_justify="left")
    for col, justify in (("model", "left"), (f"seen {metric}", "right"), (f"unseen {metric} (zero-shot)", "right"),
                         ("parameters", "right"), ("train s", "right")):
        table.add_column(col, justify=justify)
    for kind, r in report["models"].items():
        params = r["params"].get("total")
        table.add_row(LABELS.get(kind, kind), _fmt(r.get("seen")), _fmt(r.get("unseen")), _fmt(params, ","),
                      _fmt(r.get("seconds"), ".1f"), style="bold" if kind == "hypernetwork" else None)
    for kind, r in report.get("references", {}).items():
        table.add_row(LABELS.get(kind, kind), _fmt(r.get("seen")), _fmt(r.get("unseen")), "", "", style="dim")
    return table


def verdict(report: dict) -> dict:
    """Is the hypernetwork worth it here? It must beat every other model and reference on each split."""
    hyper = report["models"]["hypernetwork"]
    out = {}
    for split in ("seen", "unseen"):
        others = {k: r.get(split) for k, r in {**report["models"], **report.get("references", {})}.items()
                  if k != "hypernetwork" and r.get(split) is not None}
        best = max(others, key=others.get) if others else None
        out[split] = {"hypernetwork": hyper.get(split), "best_other": best,
                      "best_other_value": others.get(best), "beats_all": best is None or hyper.get(split, -1) >= others[best]}
    out["worth_it"] = all(v["beats_all"] for v in out.values() if isinstance(v, dict))
    return out


def print_report(report: dict, title: str, console: Console | None = None) -> None:
    console = console or Console()
    console.print(comparison_table(report, title))
    for split, v in report["verdict"].items():
        if not isinstance(v, dict) or v["best_other"] is None:
            continue
        mark = "[green]✓[/]" if v["beats_all"] else "[red]✗[/]"
        console.print(f"{mark} {split}: hypernetwork {v['hypernetwork']:.3f} vs best other "
                      f"({LABELS.get(v['best_other'], v['best_other'])}) {v['best_other_value']:.3f}")


def write_per_dataset(report: dict, path: Path) -> Path | None:
    """Per-dataset metric table: one row per dataset, one column per model (seen rows)."""
    kinds = [k for k, r in report["models"].items() if r.get("per_dataset_seen")]
    if not kinds:
        return None
    names = list(report["models"][kinds[0]]["per_dataset_seen"])
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dataset", *kinds])
        for n in names:
            writer.writerow([n, *[report["models"][k]["per_dataset_seen"].get(n) for k in kinds]])
    return path


def write_report(report: dict, reports_dir: Path, name: str) -> Path:
    """`<name>.json` (latest) and a timestamped copy, both written atomically, and the per-dataset CSV."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    write_per_dataset(report, reports_dir / f"{name}-per-dataset.csv")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(report, indent=2, default=float)
    for path in (reports_dir / f"{name}-{stamp}.json", reports_dir / f"{name}.json"):
        fd, tmp = tempfile.mkstemp(dir=reports_dir, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    return reports_dir / f"{name}.json"


def print_few_shot(curve: dict, console: Console) -> None:
    """Unseen datasets: zero-shot vs k labelled rows, on the same query rows."""
    if not curve:
        return
    table = Table(title=f"Unseen datasets with k labelled rows ({curve['n_datasets']} datasets, "
                        f"{curve['query_rows']:,} query rows)", title_justify="left")
    for col in ("k", "R²", "kept zero-shot", "adapt ms / dataset (all members)"):
        table.add_column(col, justify="right")
    for k, entry in curve.items():
        if not isinstance(entry, dict):
            continue
        table.add_row("0 (zero-shot)" if k == "0" else k, _fmt(entry["metric"]),
                      _fmt(entry.get("kept_zero_shot_share"), ".0%"),
                      _fmt(1e3 * entry["adapt_seconds_per_dataset"], ".0f") if "adapt_seconds_per_dataset" in entry else "—")
    console.print(table)
