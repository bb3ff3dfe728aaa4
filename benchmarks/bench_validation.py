"""How long validating a fleet takes: 100 datasets x 1,000 rows, after imports.

    python benchmarks/bench_validation.py [--datasets 100] [--rows 1000] [--out benchmarks/results/validation.json]

The fleet is the synthetic hospitals fleet (6-8 features + target, parquet and CSV) written to a
temporary folder. "After imports" means Great Expectations is already imported and the worker
fork server is warm (it imports GE once); the clock covers reading every file, running every
suite, explaining failures and computing stats. Printed and written as JSON, with the machine's
load so that a slow figure on a busy machine can be told apart from a slow pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")

from flows import fleetgen, validation  # noqa: E402


def run(n_datasets: int, n_rows: int, workers: list[int | None]) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp:
        items = fleetgen.make_fleet(n_datasets, seed=1, min_rows=n_rows, max_rows=n_rows + 1)
        contracts = fleetgen.write_datasets(items, tmp)

        t0 = time.perf_counter()
        validation._gx()  # import GE in this process
        import_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        validation.validate_fleet(contracts[:4], workers=2)  # start the fork server (imports GE once)
        warm_s = time.perf_counter() - t0

        runs = []
        for w in workers:
            cpu0, t0 = time.process_time(), time.perf_counter()
            fleet = validation.validate_fleet(contracts, workers=w)
            wall = time.perf_counter() - t0
            assert len(fleet.valid) == n_datasets, [r.reason for r in fleet.quarantined][:3]
            cpu = sum(r.cpu_seconds for r in fleet.results)
            runs.append({"workers": fleet.workers, "seconds": round(wall, 3),
                         "per_dataset_ms": round(1000 * wall / n_datasets, 1),
                         "cpu_seconds_all_datasets": round(cpu, 3),
                         "cpu_per_dataset_ms": round(1000 * cpu / n_datasets, 1),
                         "main_process_cpu_s": round(time.process_time() - cpu0, 3)})
    return {
        "benchmark": "validate_fleet", "datasets": n_datasets, "rows_per_dataset": n_rows,
        "features_per_dataset": "6-8 + target",
        "import_seconds": round(import_s, 2), "fork_server_warmup_seconds": round(warm_s, 2),
        "runs": runs, "best_seconds": min(r["seconds"] for r in runs), "target_seconds": 10.0,
        # What the same work takes on idle CPUs: CPU time per dataset spread over the workers.
        "idle_machine_estimate_seconds": round(min(r["cpu_seconds_all_datasets"] for r in runs)
                                               / min(os.cpu_count() or 1, 8), 2),
        "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "validation.json")
    args = parser.parse_args()
    result = run(args.datasets, args.rows, workers=[1, None])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for r in result["runs"]:
        print(f"{args.datasets} datasets x {args.rows} rows, {r['workers']} worker(s): {r['seconds']:.2f} s "
              f"({r['per_dataset_ms']:.0f} ms/dataset wall, {r['cpu_per_dataset_ms']:.0f} ms/dataset CPU)")
    print(f"on {result['cpus']} idle CPUs this is about {result['idle_machine_estimate_seconds']:.1f} s")
    print(f"best {result['best_seconds']:.2f} s (target < 10 s); GE import {result['import_seconds']:.1f} s, "
          f"fork server {result['fork_server_warmup_seconds']:.1f} s; load {result['load_average_1m']} on "
          f"{result['cpus']} CPUs -> {args.out}")


if __name__ == "__main__":
    main()
