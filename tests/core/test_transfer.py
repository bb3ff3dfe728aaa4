"""GEM transfer metrics, the sequential protocol and version-to-version backward transfer."""

import math

import numpy as np
import pytest

from hypernet_core import (DatasetTable, Evaluation, FleetEncoder, ModelConfig, TrainConfig, build_model, evaluate,
                           holdout_tables)
from hypernet_core.transfer import gem_metrics, sequential_protocol, version_backward_transfer

R = [[0.80, 0.10, 0.20],
     [0.60, 0.90, 0.30],
     [0.50, 0.70, 0.95]]
B = [0.0, 0.1, 0.2]


def test_gem_metrics_of_a_hand_made_matrix():
    m = gem_metrics(R, B, metric="accuracy")
    assert m["ACC"] == pytest.approx((0.50 + 0.70 + 0.95) / 3)
    assert m["BWT"] == pytest.approx(((0.50 - 0.80) + (0.70 - 0.90)) / 2)   # -0.25: forgetting
    assert m["FWT"] == pytest.approx(((0.10 - 0.1) + (0.30 - 0.2)) / 2)      # 0.05
    assert m["T"] == 3 and "accuracy" in m["normalisation"] and "T-1=2" in m["normalisation"]


def test_gem_metrics_edge_cases():
    assert math.isnan(gem_metrics(R)["FWT"])                       # no untrained baseline given
    one = gem_metrics([[0.7]], [0.1])
    assert one["ACC"] == pytest.approx(0.7) and math.isnan(one["BWT"]) and math.isnan(one["FWT"])
    with pytest.raises(ValueError, match="square"):
        gem_metrics([[0.1, 0.2]])
    with pytest.raises(ValueError, match="one value per stage"):
        gem_metrics(R, [0.0, 0.1])


def _contradicting_fleet():
    """Stage 1: three datasets with y = x·w. Stage 2: three with y = -x·w on the same kind of inputs.
    A pooled model cannot tell them apart, so learning stage 2 must undo stage 1."""
    rng = np.random.default_rng(0)
    w = np.array([1.5, -1.0, 0.5])
    tables = []
    for d in range(6):
        x = rng.normal(size=(120, 3))
        sign = 1.0 if d < 3 else -1.0
        y = sign * (x @ w) + 0.1 * rng.normal(size=120)
        tables.append(DatasetTable(f"ds{d}", {f"f{j}": x[:, j] for j in range(3)}, y, {"m": float(d)}))
    train, test = holdout_tables(tables, 0.3, seed=0)
    enc = FleetEncoder.fit(train)
    return enc, enc.transform(train), enc.transform(test)


def test_sequential_protocol_fills_R_and_shows_forgetting():
    enc, train, test = _contradicting_fleet()

    def make_model():
        return build_model("pooled", ModelConfig(hidden=(16,)), enc.n_features, enc.meta_dim, enc.out_dim, 6)

    cfg = TrainConfig(max_steps=50, eval_every=10, patience=5, lr=5e-2, datasets_per_batch=3, rows_per_dataset=16,
                      accumulate=1, progress=False)
    res = sequential_protocol(make_model, [[0, 1, 2], [3, 4, 5]], train, test, cfg)
    r = res.R
    assert r.shape == (2, 2) and res.baseline.shape == (2,) and res.metric == "r2"
    assert res.stages == [["ds0", "ds1", "ds2"], ["ds3", "ds4", "ds5"]]
    assert r[0, 0] > 0.8 and r[1, 1] > 0.8        # each stage is learned
    assert r[1, 0] < 0 and r[0, 1] < 0            # and each undoes the other
    gem = res.gem()
    assert gem["BWT"] == pytest.approx(float(r[1, 0] - r[0, 0])) and gem["BWT"] < -0.8
    assert gem["FWT"] == pytest.approx(float(r[0, 1] - res.baseline[1]))
    assert gem["ACC"] == pytest.approx(float(r[1].mean()))
    # b is the untrained model: the same as scoring a fresh one
    assert res.baseline[0] == pytest.approx(evaluate(make_model(), test.datasets([0, 1, 2])).mean_per_dataset)


def test_sequential_protocol_checks_its_inputs():
    enc, train, test = _contradicting_fleet()

    def make():
        return build_model("pooled", ModelConfig(hidden=(8,)), enc.n_features, enc.meta_dim, enc.out_dim, 6)

    with pytest.raises(ValueError, match="same datasets"):
        sequential_protocol(make, [[0]], train, test.datasets([1, 0, 2, 3, 4, 5]), TrainConfig(progress=False))
    with pytest.raises(ValueError, match="at least one"):
        sequential_protocol(make, [[0], []], train, test, TrainConfig(progress=False))


def _eval(per):
    return Evaluation("r2", 0.0, per, 100)


def test_version_backward_transfer_over_the_datasets_both_know():
    old = _eval({"a": 0.80, "b": 0.50, "c": 0.90, "gone": 0.7, "flat": float("nan")})
    new = _eval({"a": 0.85, "b": 0.30, "c": 0.60, "fresh": 0.4, "flat": 0.2})
    bt = version_backward_transfer(new, old, worst=5)
    assert bt["n_common"] == 3 and set(bt["per_dataset"]) == {"a", "b", "c"}
    assert bt["per_dataset"]["b"] == pytest.approx(-0.2)
    assert bt["mean_delta"] == pytest.approx((0.05 - 0.20 - 0.30) / 3)
    assert [n for n, _ in bt["worst"]] == ["c", "b"] and bt["n_worse"] == 2
    assert math.isnan(version_backward_transfer(_eval({"x": 1.0}), old)["mean_delta"])
    with pytest.raises(ValueError, match="accuracy"):
        version_backward_transfer(Evaluation("accuracy", 0.0, {"a": 0.9}, 1), old)
