"""Speed and size figures for hypernet_core. Prints them and writes benchmarks/results/core.json.

    python benchmarks/bench_core.py            # everything (a few minutes on 2 CPU cores)
    python benchmarks/bench_core.py --quick    # smaller sizes, for a smoke run

Figures (goals from the issue in brackets):
- batched_vs_loop_speedup at 10/100/1,000 datasets: one training step of our batched model against the
  tutorial loop (per dataset: generate its weights, forward, backward; then one optimiser step) [>= 10x at 100]
- hypernet_vs_separate: 100 datasets, one hypernetwork vs 100 separately trained models: wall time,
  stored parameters, mean test R² [<= 1/5 time, <= 1/10 params, R² at least equal]
- epoch_time_vs_datasets: epoch time at equal total rows for 10/100/1,000 datasets [within 1.5x]
- generate_weights_ms: one dataset's full target weights on CPU [<= 5 ms]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hypernet_core import FleetEncoder, ModelConfig, TrainConfig, build_model, evaluate, fit, holdout_tables
from hypernet_core.model import Conditioning, HyperNetwork
from hypernet_core.synthetic import synthetic_fleet
from hypernet_core.train import BalancedSampler, batch_inputs, task_loss, train_step

OUT = Path(__file__).parent / "results" / "core.json"


def _setup(n_datasets: int, rows: int | tuple[int, int], seed: int = 0):
    tables = synthetic_fleet(n_datasets, rows=rows, n_features=5, seed=seed)
    enc = FleetEncoder.fit(tables)
    model = HyperNetwork(ModelConfig(), enc.n_features, enc.meta_dim, enc.out_dim, n_datasets)
    for head in model.heads.values():  # as after training: non-zero updates
        torch.nn.init.normal_(head.a.weight, std=0.05)
    return enc, enc.transform(tables), model


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def loop_step(model: HyperNetwork, fleet, rows, opt) -> None:
    """The usual tutorial code: one forward and backward per dataset, then a step."""
    opt.zero_grad(set_to_none=True)
    d_of_row = fleet.dataset[rows]
    for d in d_of_row.unique():
        r = rows[d_of_row == d]
        cond = Conditioning(fleet.emb_ids[d].view(1), fleet.meta[d].view(1, -1))
        updates = model.updates(cond)
        h = torch.cat([fleet.x[r] * fleet.mask[r], fleet.mask[r]], -1)
        for l, layer in enumerate(model.target.layers):
            w, b = layer.weight, layer.bias
            if l in updates:
                w, b = w + updates[l].dense()[0], b + updates[l].bias[0]
            h = F.linear(h, w, b)
            if l < len(model.target.layers) - 1:
                h = F.gelu(h)
        (task_loss("regression", h, fleet.y[r]) * len(r) / len(rows)).backward()
    opt.step()


def batched_step(model: HyperNetwork, fleet, rows, opt) -> None:
    opt.zero_grad(set_to_none=True)
    x, mask, group, cond = batch_inputs(fleet, rows)
    out, _ = model(x, mask, group, cond)
    task_loss("regression", out, fleet.y[rows]).backward()
    opt.step()


def bench_speedup(sizes: list[int], rows_per_dataset: int = 8) -> dict:
    out = {}
    for n in sizes:
        _, fleet, model = _setup(n, rows=rows_per_dataset * 2)
        rows = BalancedSampler(fleet.dataset, n, n, rows_per_dataset, torch.Generator().manual_seed(0)).sample()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        repeats = 20 if n <= 100 else 3
        t_batched = _median_time(lambda: batched_step(model, fleet, rows, opt), repeats)
        t_loop = _median_time(lambda: loop_step(model, fleet, rows, opt), max(2, repeats // 4))
        out[str(n)] = {"batch_rows": len(rows), "batched_ms": 1e3 * t_batched, "loop_ms": 1e3 * t_loop,
                       "speedup": t_loop / t_batched}
        print(f"  {n:>5} datasets, {len(rows):>5} rows: batched {1e3 * t_batched:8.1f} ms, "
              f"loop {1e3 * t_loop:9.1f} ms, speed-up {t_loop / t_batched:6.1f}x", flush=True)
    return out


def bench_vs_separate(n_datasets: int, max_steps: int) -> dict:
    tables = synthetic_fleet(n_datasets, rows=(40, 400), n_features=5, seed=1)
    train, test = holdout_tables(tables, 0.25, seed=0)
    enc = FleetEncoder.fit(train)
    cfg = ModelConfig()
    hyper = build_model("hypernetwork", cfg, enc.n_features, enc.meta_dim, 1, n_datasets)
    start = time.perf_counter()
    fit(hyper, enc.transform(train), TrainConfig(max_steps=max_steps, progress=False))
    hyper_s = time.perf_counter() - start
    hyper_r2 = evaluate(hyper, enc.transform(test)).mean_per_dataset

    start, r2s, sep_params = time.perf_counter(), [], 0
    for tr, te in zip(train, test):  # the usual way: one model per dataset, trained one after another
        e = FleetEncoder.fit([tr])
        m = build_model("pooled", cfg, e.n_features, e.meta_dim, 1, 1)
        fit(m, e.transform([tr]), TrainConfig(max_steps=max_steps, datasets_per_batch=1, rows_per_dataset=64,
                                              accumulate=1, warmup_frac=0.0, progress=False))
        r2s.append(evaluate(m, e.transform([te])).overall)
        sep_params += m.parameter_counts()["total"]
    sep_s = time.perf_counter() - start
    res = {"n_datasets": n_datasets,
           "hypernet": {"seconds": hyper_s, "params": hyper.parameter_counts()["total"], "mean_test_r2": hyper_r2},
           "separate": {"seconds": sep_s, "params": sep_params, "mean_test_r2": statistics.mean(r2s)}}
    res["time_ratio"] = hyper_s / sep_s
    res["param_ratio"] = res["hypernet"]["params"] / sep_params
    print(f"  hypernetwork {hyper_s:6.1f} s, {res['hypernet']['params']:,} params, mean R² {hyper_r2:.3f}")
    print(f"  separate     {sep_s:6.1f} s, {sep_params:,} params, mean R² {res['separate']['mean_test_r2']:.3f}")
    print(f"  time ratio {res['time_ratio']:.3f}, parameter ratio {res['param_ratio']:.3f}", flush=True)
    return res


def bench_epoch_time(sizes: list[int], total_rows: int) -> dict:
    out = {}
    cfg = TrainConfig(progress=False)
    for n in sizes:
        _, fleet, model = _setup(n, rows=total_rows // n)
        sampler = BalancedSampler(fleet.dataset, n, cfg.datasets_per_batch, cfg.rows_per_dataset,
                                  torch.Generator().manual_seed(0))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        steps = max(1, len(fleet) // (cfg.datasets_per_batch * cfg.rows_per_dataset * cfg.accumulate))
        epoch = lambda: [train_step(model, fleet, sampler, opt, cfg, torch.device("cpu")) for _ in range(steps)]  # noqa: E731
        out[str(n)] = {"rows": len(fleet), "epoch_s": _median_time(epoch, 3)}
        print(f"  {n:>5} datasets x {total_rows // n:>5} rows: epoch {out[str(n)]['epoch_s']:.3f} s", flush=True)
    times = [v["epoch_s"] for v in out.values()]
    out["max_over_min"] = max(times) / min(times)
    print(f"  slowest / fastest: {out['max_over_min']:.2f}x")
    return out


def bench_generate(n_datasets: int = 160) -> dict:
    _, fleet, model = _setup(n_datasets, rows=10)
    model.eval()
    cond = Conditioning(fleet.emb_ids[:1], fleet.meta[:1])
    with torch.no_grad():
        ms = 1e3 * _median_time(lambda: model.generate_weights(cond), 200)
    print(f"  generate one dataset's weights: {ms:.2f} ms")
    return {"ms": ms, "config": ModelConfig().to_dict()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    results: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": "cpu"}
    print("batched_vs_loop_speedup")
    results["batched_vs_loop_speedup"] = bench_speedup([10, 100] if args.quick else [10, 100, 1000])
    print("hypernet_vs_separate")
    results["hypernet_vs_separate"] = bench_vs_separate(10 if args.quick else 100, 60 if args.quick else 400)
    print("epoch_time_vs_datasets")
    results["epoch_time_vs_datasets"] = bench_epoch_time([10, 100] if args.quick else [10, 100, 1000],
                                                         2_000 if args.quick else 20_000)
    print("generate_weights_ms")
    results["generate_weights_ms"] = bench_generate()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written {args.out}")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
