"""Data-parallel training under torchrun: 2 CPU processes (gloo) learn what one does, and resume."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hypernet_core import checkpoint, distributed, evaluate, fit

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("fit_script.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
for _key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(_key, None)


def _torchrun(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
            str(out), *extra]


def _single(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), str(out), "--threads", "1", *extra]


def _result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One uninterrupted 2-process run, shared by the tests below."""
    out = tmp_path_factory.mktemp("ddp")
    subprocess.run(_torchrun(out), check=True, env=ENV, timeout=600, capture_output=True)
    return out


def test_outside_torchrun_everything_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    where = distributed.init()
    assert (where.rank, where.world_size, where.is_main, where.enabled) == (0, 1, True, False)
    assert distributed.resolve_device("cpu", where) == torch.device("cpu")
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_sum(t) is t and distributed.all_gather(t)[0].equal(t)


def test_two_processes_learn_what_one_does(ddp_run, tmp_path):
    subprocess.run(_single(tmp_path / "one"), check=True, env=ENV, timeout=600)
    one, two = _result(tmp_path / "one"), _result(ddp_run)
    assert (one["world_size"], two["world_size"]) == (1, 2)
    # Every rank ends with the same parameters (DDP kept them in step) and the same score.
    ranks = [json.loads((ddp_run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]
    # Two processes see twice the rows per step, so an epoch is half as many steps.
    assert two["steps_per_epoch"] < one["steps_per_epoch"]

    spec = importlib.util.spec_from_file_location("fit_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pooled, cfg, train, test = script.build("pooled")
        fit(pooled, train, cfg)
    finally:
        torch.set_num_threads(threads)
    baseline = evaluate(pooled, test).overall
    print(f"test R²: one process {one['r2']:.4f}, two processes {two['r2']:.4f}, pooled baseline {baseline:.4f}")
    assert abs(two["r2"] - one["r2"]) < 0.05
    assert min(one["r2"], two["r2"]) > baseline + 0.2


@pytest.mark.xfail(strict=False, reason="known flake, under investigation: in about 1 of 4 local runs the resumed "
                   "2-process run loses rank 1 without a traceback (gloo: connection closed by peer); when it "
                   "completes, the result is bitwise equal")
def test_a_killed_two_process_run_resumes_to_the_same_result(ddp_run, tmp_path):
    ck = tmp_path / "ck"
    cmd = _torchrun(tmp_path / "run", "--checkpoint-dir", str(ck), "--sleep", "0.03")
    proc = subprocess.Popen(cmd, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, f"training ended (rc {proc.returncode}) before epoch 2 was checkpointed"
            assert time.monotonic() < deadline, "no checkpoint of epoch 2 in time"
            if checkpoint.exists(ck):
                info = checkpoint.peek(ck)
                if info["step"] >= 2 * info["steps_per_epoch"]:
                    break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers, at once
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not (tmp_path / "run" / "result.json").exists() and not checkpoint.peek(ck)["done"]
    assert checkpoint.peek(ck)["fingerprint"]["world_size"] == 2

    again = subprocess.run(cmd, env=ENV, timeout=600, capture_output=True, text=True)  # the same command again
    assert again.returncode == 0, f"resumed run failed (rc {again.returncode}):\n{again.stderr[-12000:]}"
    ref, run = _result(ddp_run), _result(tmp_path / "run")
    assert run["resumed_from"] >= 2 * run["steps_per_epoch"]
    for key in ("r2", "steps", "best_val_loss", "history"):
        assert run[key] == ref[key], key
    a, b = load_file(ddp_run / "state.safetensors"), load_file(tmp_path / "run" / "state.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
