"""Training behaviour on synthetic fleets with a known structure (fixed seeds, seconds on CPU)."""

import numpy as np
import pytest
import torch

from hypernet_core import (DatasetTable, FleetEncoder, ModelConfig, TrainConfig, build_model, evaluate, fit,
                           holdout_tables)
from hypernet_core.synthetic import synthetic_fleet
from hypernet_core.train import BalancedSampler

FAST = dict(max_steps=150, eval_every=10, patience=6, progress=False, datasets_per_batch=16, rows_per_dataset=8,
            accumulate=2)


def _train_eval(kind, tables, task="regression", **train):
    train_tables, test_tables = holdout_tables(tables, 0.3, seed=0)
    enc = FleetEncoder.fit(train_tables, task=task)
    model = build_model(kind, ModelConfig(hidden=(32,)), enc.n_features, enc.meta_dim, enc.out_dim, len(tables))
    result = fit(model, enc.transform(train_tables), TrainConfig(**{**FAST, **train}))
    return model, result, evaluate(model, enc.transform(test_tables))


@pytest.fixture(scope="module")
def fleet():
    return synthetic_fleet(24, rows=(40, 120), n_features=4, seed=3)


def test_hypernetwork_learns_what_one_pooled_model_cannot(fleet):
    _, _, hyper = _train_eval("hypernetwork", fleet)
    _, _, pooled = _train_eval("pooled", fleet)
    assert hyper.overall > 0.8
    assert hyper.overall > pooled.overall + 0.2


def test_every_baseline_trains_through_the_same_interface(fleet):
    for kind in ("per_dataset", "task_conditioned"):
        _, result, ev = _train_eval(kind, fleet)
        assert ev.overall > 0.3, kind
        assert result.steps > 0


def test_classification(fleet):
    tables = synthetic_fleet(24, rows=(40, 120), n_features=4, task="classification", seed=3)
    _, _, ev = _train_eval("hypernetwork", tables, task="classification")
    assert ev.metric == "accuracy" and ev.overall > 0.8


def test_same_seed_same_result(fleet):
    a = _train_eval("hypernetwork", fleet, max_steps=40)[2].overall
    b = _train_eval("hypernetwork", fleet, max_steps=40)[2].overall
    assert a == b


def test_warmup_trains_only_the_shared_layers(fleet):
    model, _, _ = _train_eval("hypernetwork", fleet, max_steps=20, warmup_frac=1.0)
    for head in model.heads.values():
        assert torch.count_nonzero(head.a.weight) == 0 and torch.count_nonzero(head.bias.weight) == 0
    model, _, _ = _train_eval("hypernetwork", fleet, max_steps=20, warmup_frac=0.5)
    assert any(torch.count_nonzero(h.a.weight) > 0 for h in model.heads.values())


def test_early_stopping_on_a_target_with_nothing_to_learn():
    rng = np.random.default_rng(0)
    tables = [DatasetTable(f"d{i}", {"x": rng.normal(size=60)}, rng.normal(size=60), {"m": float(i)})
              for i in range(6)]
    _, result, _ = _train_eval("hypernetwork", tables, max_steps=400, patience=3, warmup_frac=0.0)
    assert result.steps < 400


def test_sampler_balances_datasets_of_very_different_sizes():
    dataset = torch.cat([torch.zeros(1000, dtype=torch.long), torch.ones(10, dtype=torch.long),
                         torch.full((100,), 2, dtype=torch.long)])
    sampler = BalancedSampler(dataset, 3, datasets_per_batch=2, rows_per_dataset=4,
                              generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(dataset[torch.cat([sampler.sample() for _ in range(600)])], minlength=3)
    assert counts.min() / counts.max() > 0.9


def test_gradient_accumulation_draws_several_mixes_per_step(fleet, monkeypatch):
    draws = []
    original = BalancedSampler.sample
    monkeypatch.setattr(BalancedSampler, "sample", lambda self: draws.append(1) or original(self))
    _train_eval("pooled", fleet, max_steps=5, accumulate=3, val_frac=0.0)
    assert len(draws) == 15
