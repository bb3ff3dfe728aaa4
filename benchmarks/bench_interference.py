"""Wall time of the interference matrix for a fleet of 200 datasets. Prints it and writes
benchmarks/results/interference.json.

    python benchmarks/bench_interference.py              # 200 datasets (well under a minute on 2 CPU cores)
    python benchmarks/bench_interference.py --datasets 50

Goal from the issue: 200 datasets in a few seconds on CPU (default settings: 4 draws of 16 rows per
dataset, gradients projected to 512 dimensions). The first call in a process also pays torch's lazy
imports behind `torch.func` (several seconds, once): it is reported apart as `first_call_seconds`.
Also recorded: CPU time against wall time and the load average, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from hypernet_core import FleetEncoder, ModelConfig, build_model
from hypernet_core.interference import interference_matrix
from hypernet_core.synthetic import synthetic_fleet

OUT = Path(__file__).parent / "results" / "interference.json"


def _time(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds over `repeats` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    tables = synthetic_fleet(args.datasets, rows=(40, 400), n_features=5, seed=0)
    enc = FleetEncoder.fit(tables)
    fleet = enc.transform(tables)
    settings = dict(steps=4, rows_per_dataset=16, proj_dim=512)
    results: dict = {"benchmark": "interference_matrix", "datasets": args.datasets, "rows": len(fleet),
                     "settings": settings, "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "cpus": os.cpu_count(), "device": "cpu", "models": []}
    first = True
    for kind in ("hypernetwork", "pooled", "task_conditioned"):
        model = build_model(kind, ModelConfig(), enc.n_features, enc.meta_dim, enc.out_dim, args.datasets)
        n_shared = sum(p.numel() for p in model.target.parameters())
        if first:  # pays torch's one-off lazy imports
            start = time.perf_counter()
            interference_matrix(model, fleet, **settings)
            results["first_call_seconds"] = round(time.perf_counter() - start, 3)
            first = False
        wall, cpu = _time(lambda: interference_matrix(model, fleet, **settings), args.repeats)
        res = interference_matrix(model, fleet, **settings)
        row = {"model": kind, "shared_parameters": n_shared, "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
               "mean_off_diagonal": round(res.mean_off_diagonal, 4), "negative_share": round(res.negative_share, 4)}
        results["models"].append(row)
        print(f"{kind:>17}: {args.datasets} datasets, {n_shared} shared parameters: {wall:.2f} s wall, "
              f"{cpu:.2f} s CPU")
    results["seconds"] = results["models"][0]["seconds"]  # the hypernetwork, the figure the issue asks for
    results["load_average_1m"] = round(os.getloadavg()[0], 2)
    print(f"first call (with torch's lazy imports): {results['first_call_seconds']:.2f} s; "
          f"load average {results['load_average_1m']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
