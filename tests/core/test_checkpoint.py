"""Checkpoints: atomic, pickle-free, and a resumed fit ends bit for bit where an uninterrupted one does."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import hypernet_core.train as train_module
from hypernet_core import (DatasetTable, FleetEncoder, ModelConfig, TrainConfig, build_model, evaluate, fit,
                           holdout_tables)
from hypernet_core import checkpoint
from hypernet_core.checkpoint import CheckpointError
from hypernet_core.synthetic import synthetic_fleet

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("fit_script.py")
# 12 datasets of ~40 training rows, 64 rows a step: 7 steps an epoch.
FAST = dict(max_steps=48, eval_every=4, patience=4, progress=False, datasets_per_batch=8, rows_per_dataset=8,
            accumulate=1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models on a shared 2-core machine: one thread is several times faster than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    train, test = holdout_tables(synthetic_fleet(12, rows=(40, 80), n_features=3, seed=11), 0.3, seed=0)
    enc = FleetEncoder.fit(train)
    return enc, enc.transform(train), enc.transform(test)


def _model(enc, kind="hypernetwork"):
    return build_model(kind, ModelConfig(hidden=(16,)), enc.n_features, enc.meta_dim, enc.out_dim,
                       len(enc.datasets), seed=0)


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


class Interrupted(Exception):
    pass


def _interrupt_at(monkeypatch, step: int) -> None:
    """Make train_step blow up on its `step`-th call, as a crash mid-training would."""
    calls = {"n": 0}
    original = train_module.train_step

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            raise Interrupted
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", crashing)


# ---- the file format ---------------------------------------------------------------------------------
def test_nested_state_round_trips_through_one_safetensors_file(tmp_path):
    opt = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters())
    opt.zero_grad()
    sum(p.sum() for p in opt.param_groups[0]["params"]).backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "best": float("inf"), "none": None, "pair": (1, 2.5),
             "history": [{"step": 3, "loss": 0.1 + 0.2}], "rng": torch.get_rng_state(), "__odd": {"x": 1}}
    checkpoint.save(tmp_path, state)
    back = checkpoint.load(tmp_path)

    assert back["best"] == float("inf") and back["none"] is None and back["pair"] == (1, 2.5)
    assert back["history"] == state["history"] and back["__odd"] == {"x": 1}
    assert torch.equal(back["rng"], state["rng"])
    assert back["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]  # betas stay a tuple
    assert set(back["optimizer"]["state"]) == {0, 1}                                # int keys stay ints
    for i in (0, 1):
        for k, v in state["optimizer"]["state"][i].items():
            assert torch.equal(back["optimizer"]["state"][i][k], v)
    # A plain safetensors file: any safetensors reader opens it.
    names = set(load_file(checkpoint.path_in(tmp_path)))
    assert {"rng", "optimizer/state/0/exp_avg", "optimizer/state/1/step"} <= names
    assert oct(os.stat(checkpoint.path_in(tmp_path)).st_mode & 0o777) == oct(0o644)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, {"w": torch.ones(2), "step": 4})

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint load unpickled something")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert checkpoint.load(tmp_path)["step"] == 4


class _Payload:
    def __reduce__(self):
        return (os.mkdir, (os.environ["HYPERNET_TEST_MARK"],))


def test_a_pickle_posing_as_a_checkpoint_is_refused_not_run(tmp_path, monkeypatch):
    mark = tmp_path / "pwned"
    monkeypatch.setenv("HYPERNET_TEST_MARK", str(mark))
    (tmp_path / "ck").mkdir()
    torch.save({"model": _Payload()}, checkpoint.path_in(tmp_path / "ck"))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(tmp_path / "ck")
    assert not mark.exists()


def test_stray_temporary_file_of_a_killed_write_is_ignored_and_cleaned(tmp_path):
    checkpoint.save(tmp_path, {"step": 1})
    stray = tmp_path / f".{checkpoint.FILE}.abc123.tmp"
    stray.write_bytes(b"half a checkpoint")
    assert checkpoint.load(tmp_path)["step"] == 1
    checkpoint.save(tmp_path, {"step": 2})
    assert not stray.exists() and checkpoint.load(tmp_path)["step"] == 2


# ---- resuming a fit ------------------------------------------------------------------------------------
def test_interrupted_fit_resumes_to_exactly_the_uninterrupted_result(data, tmp_path, monkeypatch):
    enc, train, _ = data
    cfg = TrainConfig(**FAST)
    ref_model = _model(enc)
    ref = fit(ref_model, train, cfg)

    epoch = ref.steps_per_epoch
    assert ref.steps > 3 * epoch
    _interrupt_at(monkeypatch, 3 * epoch - 1)  # a crash during epoch 3: the last checkpoint ends epoch 2
    with pytest.raises(Interrupted):
        fit(_model(enc), train, cfg, checkpoint_dir=tmp_path)
    assert checkpoint.peek(tmp_path)["step"] == 2 * epoch and not checkpoint.peek(tmp_path)["done"]
    monkeypatch.undo()

    model = _model(enc)
    res = fit(model, train, cfg, checkpoint_dir=tmp_path)
    assert res.resumed_from == 2 * epoch
    assert (res.steps, res.best_val_loss, res.history) == (ref.steps, ref.best_val_loss, ref.history)
    assert _states_equal(model.state_dict(), ref_model.state_dict())
    assert checkpoint.peek(tmp_path)["done"]


def test_early_stopping_state_survives_a_restart(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    tables = [DatasetTable(f"d{i}", {"x": rng.normal(size=60)}, rng.normal(size=60), {"m": float(i)})
              for i in range(6)]
    enc = FleetEncoder.fit(tables)
    fleet = enc.transform(tables)
    cfg = TrainConfig(**{**FAST, "max_steps": 400, "patience": 3, "warmup_frac": 0.0, "eval_every": 2})
    ref_model = _model(enc)
    ref = fit(ref_model, fleet, cfg)
    assert ref.steps < 400

    # The last checkpoint before the stop at which some evaluations had already failed to improve.
    best, stale, kill_after = float("inf"), 0, None
    evals = {h["step"]: h["val_loss"] for h in ref.history}
    for step in range(1, ref.steps):
        if step in evals:
            best, stale = (evals[step], 0) if evals[step] < best - 1e-6 else (best, stale + 1)
        if step % ref.steps_per_epoch == 0 and stale > 0:
            kill_after = step
    assert kill_after, "no checkpoint with a stale count to restore"

    folder = tmp_path / "ck"
    _interrupt_at(monkeypatch, kill_after + 1)
    with pytest.raises(Interrupted):
        fit(_model(enc), fleet, cfg, checkpoint_dir=folder)
    monkeypatch.undo()
    assert checkpoint.peek(folder)["step"] == kill_after and checkpoint.peek(folder)["stale"] > 0

    model = _model(enc)
    res = fit(model, fleet, cfg, checkpoint_dir=folder)
    assert res.resumed_from > 0
    assert (res.steps, res.best_val_loss, res.history) == (ref.steps, ref.best_val_loss, ref.history)
    assert _states_equal(model.state_dict(), ref_model.state_dict())


def test_a_finished_run_is_restored_not_retrained(data, tmp_path, monkeypatch):
    enc, train, test = data
    cfg = TrainConfig(**{**FAST, "max_steps": 16})
    first = _model(enc)
    ref = fit(first, train, cfg, checkpoint_dir=tmp_path)

    monkeypatch.setattr(train_module, "train_step", lambda *a, **k: pytest.fail("trained again"))
    again = _model(enc)
    res = fit(again, train, cfg, checkpoint_dir=tmp_path)
    assert res.resumed_from == ref.steps == 16 and res.history == ref.history
    assert _states_equal(again.state_dict(), first.state_dict())
    assert evaluate(again, test).overall == evaluate(first, test).overall


def test_a_checkpoint_of_another_run_is_refused(data, tmp_path):
    enc, train, _ = data
    cfg = TrainConfig(**{**FAST, "max_steps": 8})
    fit(_model(enc), train, cfg, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"train_config\.lr"):
        fit(_model(enc), train, TrainConfig(**{**FAST, "max_steps": 8, "lr": 1e-2}), checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="kind"):
        fit(_model(enc, "pooled"), train, cfg, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="data_sha256"):
        fit(_model(enc), train.rows(torch.arange(len(train) - 1)), cfg, checkpoint_dir=tmp_path)
    # Where it was written and how often do not make another run; resume=False starts over.
    res = fit(_model(enc), train, TrainConfig(**{**FAST, "max_steps": 8, "checkpoint_every": 3, "progress": True}),
              checkpoint_dir=tmp_path)
    assert res.resumed_from == 8
    assert fit(_model(enc), train, cfg, checkpoint_dir=tmp_path, resume=False).resumed_from == 0


def test_config_checkpoint_dir_gives_each_fit_its_own_folder(data, tmp_path):
    enc, train, _ = data
    cfg = TrainConfig(**{**FAST, "max_steps": 8, "checkpoint_dir": str(tmp_path)})
    fit(_model(enc), train, cfg)
    fit(_model(enc, "pooled"), train, cfg, label="pooled baseline")
    assert checkpoint.exists(tmp_path / "hypernetwork") and checkpoint.exists(tmp_path / "pooled-baseline")
    assert fit(_model(enc), train, cfg).resumed_from == 8


def test_no_checkpoint_folder_writes_nothing(data, tmp_path, monkeypatch):
    enc, train, _ = data
    monkeypatch.chdir(tmp_path)
    fit(_model(enc), train, TrainConfig(**{**FAST, "max_steps": 8}))
    assert list(tmp_path.iterdir()) == []


# ---- a real process, killed ---------------------------------------------------------------------------
def _script(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), str(out), "--threads", "1", *extra]


def _wait_for_epoch(folder: Path, epochs: int, proc: subprocess.Popen, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if checkpoint.exists(folder):
            info = checkpoint.peek(folder)
            if info["step"] >= epochs * info["steps_per_epoch"]:
                return info
        if proc.poll() is not None:
            raise AssertionError(f"training ended (rc {proc.returncode}) before epoch {epochs} was checkpointed")
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of epoch {epochs} within {timeout} s")


def test_a_killed_training_process_resumes_to_the_same_metrics(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(_script(tmp_path / "ref"), check=True, env=env, timeout=600)

    ck = tmp_path / "ck"
    cmd = _script(tmp_path / "run", "--checkpoint-dir", str(ck), "--sleep", "0.03")
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        at_kill = _wait_for_epoch(ck, 2, proc)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not (tmp_path / "run" / "result.json").exists()
    assert not checkpoint.peek(ck)["done"] and checkpoint.peek(ck)["step"] >= at_kill["step"]

    subprocess.run(cmd, check=True, env=env, timeout=600)  # the same command again
    ref = json.loads((tmp_path / "ref" / "result.json").read_text())
    run = json.loads((tmp_path / "run" / "result.json").read_text())
    assert run["resumed_from"] >= 2 * run["steps_per_epoch"]
    for key in ("r2", "steps", "best_val_loss", "history"):
        assert run[key] == ref[key], key
    a, b = load_file(tmp_path / "ref" / "state.safetensors"), load_file(tmp_path / "run" / "state.safetensors")
    assert _states_equal(a, b)
