"""Interference: per-dataset gradients on the shared target, their cosines and summaries (seconds on CPU)."""

import json

import numpy as np
import pytest
import torch

from hypernet_core import DatasetTable, FleetEncoder, ModelConfig, build_model
from hypernet_core.interference import (cosine_matrix, interference_matrix, per_dataset_gradients, sample_blocks,
                                        summarise)
from hypernet_core.synthetic import synthetic_fleet
from hypernet_core.train import batch_inputs, task_loss


def _rule_fleet(n=256):
    """a and a_twin: the same rule on different rows; a_opposite: a's rows with the target negated;
    other: an unrelated rule."""
    rng = np.random.default_rng(0)
    w, w_other = np.array([1.0, -2.0, 0.5]), np.array([0.0, 1.0, 2.0])

    def table(name, x, y, i):
        return DatasetTable(name, {f"f{j}": x[:, j] for j in range(3)}, y, {"m": float(i)})

    x_a, x_twin, x_other = (x - x.mean(0) for x in rng.normal(size=(3, n, 3)))  # every target has mean 0,
    # so standardising the fleet's target keeps a_opposite's target exactly the negation of a's
    tables = [table("a", x_a, x_a @ w, 0), table("a_twin", x_twin, x_twin @ w, 1),
              table("a_opposite", x_a, -(x_a @ w), 2), table("other", x_other, x_other @ w_other, 3)]
    enc = FleetEncoder.fit(tables)
    return enc, enc.transform(tables)


def _zero_output_hypernetwork(enc, n):
    """A hypernetwork that predicts 0 everywhere: each dataset's gradient is then -2·E[y·h(x)] on the
    last layer, so a negated target gives exactly the negated gradient."""
    model = build_model("hypernetwork", ModelConfig(hidden=(16,)), enc.n_features, enc.meta_dim, enc.out_dim, n)
    torch.nn.init.zeros_(model.target.layers[-1].weight)
    torch.nn.init.zeros_(model.target.layers[-1].bias)
    return model


@pytest.mark.parametrize("proj_dim", [None, 8])
def test_identical_rules_agree_and_opposite_targets_conflict(proj_dim):
    enc, fleet = _rule_fleet()
    model = _zero_output_hypernetwork(enc, fleet.n_datasets)
    res = interference_matrix(model, fleet, steps=2, rows_per_dataset=256, proj_dim=proj_dim)
    m = res.matrix
    a, twin, opposite, other = range(4)
    assert m.shape == (4, 4) and torch.allclose(m.diagonal(), torch.ones(4))
    assert torch.allclose(m, m.T, atol=1e-6)
    assert m[a, twin] > 0.9
    assert m[a, opposite] == pytest.approx(-1.0, abs=1e-5)
    assert m[twin, opposite] < -0.9
    assert res.top_conflicts[0][:2] == ("a", "a_opposite")
    assert res.negative_share == pytest.approx(float((m[torch.triu(torch.ones(4, 4), 1) > 0] < 0).double().mean()))
    assert res.names == fleet.names and res.seconds > 0
    assert json.loads(json.dumps(res.to_dict()))["top_conflicts"][0]["a"] == "a"


def _loop_gradients(model, fleet, rows, weight):
    """Reference: per dataset, its real rows through the model with plain autograd."""
    params = list(model.target.parameters())
    out = []
    for d in range(fleet.n_datasets):
        r = rows[d][weight[d] > 0]
        if len(r) == 0:
            out.append(torch.zeros(sum(p.numel() for p in params)))
            continue
        x, mask, group, cond = batch_inputs(fleet, r)
        loss = task_loss(fleet.task, model(x, mask, group, cond)[0], fleet.y[r])
        out.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    return torch.stack(out)


@pytest.mark.parametrize("kind,cfg,task", [
    ("hypernetwork", dict(), "regression"),
    ("hypernetwork", dict(generation="full", generate="all", batchnorm=True, encoder="transformer"), "regression"),
    ("hypernetwork", dict(generate="last"), "classification"),
    ("task_conditioned", dict(), "regression"),
    ("pooled", dict(), "classification"),
])
def test_batched_gradients_equal_a_per_dataset_loop(kind, cfg, task):
    tables = synthetic_fleet(7, rows=(5, 30), n_features=4, missing_features=0.3, task=task, seed=1)
    enc = FleetEncoder.fit(tables, task=task)
    fleet = enc.transform(tables)
    model = build_model(kind, ModelConfig(hidden=(16, 8), **cfg), enc.n_features, enc.meta_dim, enc.out_dim, 7)
    for name, p in model.named_parameters():  # move the generator off its zero start so updates matter
        if not name.startswith("target."):
            torch.nn.init.normal_(p, std=0.05)
    model.eval()
    rows, weight = sample_blocks(fleet, 16, torch.Generator().manual_seed(0))  # some datasets have < 16 rows
    assert (weight.sum(1) < 16).any()
    batched = per_dataset_gradients(model.train(), fleet, rows, weight)
    assert model.training  # the caller's mode is restored
    expected = _loop_gradients(model.eval(), fleet, rows, weight)
    assert batched.shape == expected.shape
    torch.testing.assert_close(batched, expected, atol=1e-5, rtol=1e-4)


def test_blocks_hold_distinct_rows_of_their_own_dataset():
    tables = synthetic_fleet(6, rows=(3, 40), n_features=3, seed=2)
    fleet = FleetEncoder.fit(tables).transform(tables)
    rows, weight = sample_blocks(fleet, 10, torch.Generator().manual_seed(0))
    counts = torch.bincount(fleet.dataset, minlength=6)
    assert torch.equal(weight.sum(1).long(), counts.clamp(max=10))
    for d in range(6):
        real = rows[d][weight[d] > 0]
        assert (fleet.dataset[real] == d).all() and len(real.unique()) == len(real)


def test_a_dataset_without_rows_is_nan_and_left_out_of_the_summaries():
    enc, fleet = _rule_fleet()
    fleet = fleet.rows(torch.nonzero(fleet.dataset != 3).squeeze(1))  # "other" keeps its name, loses its rows
    res = interference_matrix(_zero_output_hypernetwork(enc, 4), fleet, steps=1, rows_per_dataset=256)
    assert torch.isnan(res.matrix[3]).all() and torch.isnan(res.matrix[:, 3]).all()
    assert not torch.isnan(res.matrix[:3, :3]).any()
    assert np.isfinite(res.mean_off_diagonal)


def test_summaries_of_a_hand_made_matrix():
    m = torch.tensor([[1.0, 0.5, -0.2, -0.9],
                      [0.5, 1.0, 0.1, 0.3],
                      [-0.2, 0.1, 1.0, float("nan")],
                      [-0.9, 0.3, float("nan"), 1.0]])
    mean, neg, conflicts = summarise(m, ["a", "b", "c", "d"], top=10)
    pairs = [0.5, -0.2, -0.9, 0.1, 0.3]  # i < j, NaN left out
    assert mean == pytest.approx(np.mean(pairs))
    assert neg == pytest.approx(2 / 5)
    assert [(a, b) for a, b, _ in conflicts] == [("a", "d"), ("a", "c")]
    assert conflicts[0][2] == pytest.approx(-0.9)


def test_cosine_of_known_vectors():
    g = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    cos = cosine_matrix(g)
    assert cos[0, 1] == pytest.approx(1.0) and cos[0, 2] == pytest.approx(-1.0) and cos[0, 3] == pytest.approx(0.0)
    assert torch.isnan(cos[4]).all()


def test_same_seed_same_matrix_and_bad_requests_are_refused():
    enc, fleet = _rule_fleet()
    model = build_model("hypernetwork", ModelConfig(hidden=(16,)), enc.n_features, enc.meta_dim, enc.out_dim, 4)
    a = interference_matrix(model, fleet, steps=2, rows_per_dataset=8, seed=3).matrix
    b = interference_matrix(model, fleet, steps=2, rows_per_dataset=8, seed=3).matrix
    assert torch.equal(a, b)
    per = build_model("per_dataset", ModelConfig(hidden=(16,)), enc.n_features, enc.meta_dim, enc.out_dim, 4)
    with pytest.raises(ValueError, match="shares no"):
        interference_matrix(per, fleet)
    with pytest.raises(ValueError, match="at least 1"):
        interference_matrix(model, fleet, steps=0)
