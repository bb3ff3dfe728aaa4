"""Encoding a fleet, and clear errors for bad input."""

import numpy as np
import pytest
import torch

from hypernet_core import DatasetTable, FleetEncoder, FleetError, holdout_tables, kfold_datasets, split_rows


def table(name="a", n=6, **over):
    t = DatasetTable(name, {"x": np.arange(n, dtype=float), "z": np.ones(n)}, np.linspace(0, 1, n),
                     {"size": 10.0, "sector": "public"})
    for k, v in over.items():
        setattr(t, k, v)
    return t


def test_missing_features_and_nan_are_masked():
    a = table("a")
    b = DatasetTable("b", {"x": np.array([1.0, np.nan, 3.0])}, np.array([0.0, 1.0, 2.0]), {"size": 20.0, "sector": "private"})
    enc = FleetEncoder.fit([a, b])
    fleet = enc.transform([a, b])
    assert enc.features == ["x", "z"]
    rows_b = fleet.dataset == 1
    assert fleet.mask[rows_b].tolist() == [[1, 0], [0, 0], [1, 0]]
    assert (fleet.x[fleet.mask == 0] == 0).all()


def test_meta_features_are_standardised_and_one_hot():
    tables = [table("a"), table("b", meta={"size": 30.0, "sector": "private"})]
    enc = FleetEncoder.fit(tables)
    meta = enc.transform(tables).meta
    assert enc.numeric_meta == ["size"] and enc.categorical_meta == {"sector": ["private", "public"]}
    assert torch.allclose(meta[:, 0], torch.tensor([-1.0, 1.0]))
    assert meta[:, 1:].tolist() == [[0, 1], [1, 0]]
    unseen = enc.encode_meta("c", {"size": 20.0, "sector": "charter"})
    assert unseen.tolist() == [0.0, 0.0, 0.0]


def test_encoder_round_trips_through_json():
    import json

    tables = [table("a"), table("b", meta={"size": 3.0, "sector": "x"})]
    enc = FleetEncoder.fit(tables)
    again = FleetEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert torch.equal(enc.transform(tables).x, again.transform(tables).x)


@pytest.mark.parametrize("change, field, words", [
    ({"target": np.array([0, 1, np.nan, 3, 4, 5.0])}, "target", "NaN or infinite"),
    ({"features": {"x": np.array([0, 1, np.inf, 3, 4, 5.0])}}, "x", "infinite"),
    ({"features": {"x": np.arange(4.0)}}, "x", "shape"),
    ({"target": np.array(list("abcdef"), dtype=object)}, "target", "must be numeric"),
    ({"target": np.array([1.0])}, "rows", "fewer than"),
    ({"features": {"x": np.array(list("abcdef"), dtype=object)}}, "x", "not numeric"),
])
def test_bad_input_names_dataset_field_and_fix(change, field, words):
    bad = table("hospital_7")
    for k, v in change.items():
        setattr(bad, k, v)
    with pytest.raises(FleetError) as err:
        FleetEncoder.fit([table("a"), bad])
    assert err.value.dataset == "hospital_7" and err.value.field == field
    assert words in str(err.value) and "Fix:" in str(err.value)


def test_classification_labels_and_unknown_class():
    a = table("a", target=np.array(["no", "yes"] * 3, dtype=object))
    enc = FleetEncoder.fit([a], task="classification")
    assert enc.classes == ["no", "yes"] and enc.out_dim == 2
    b = table("b", target=np.array(["no", "maybe"] * 3, dtype=object))
    with pytest.raises(FleetError, match="class 'maybe'"):
        enc.transform([b])
    with pytest.raises(FleetError, match="non-integer"):
        FleetEncoder.fit([table("c")], task="classification")


def test_unknown_dataset_and_feature_are_refused():
    enc = FleetEncoder.fit([table("a")])
    with pytest.raises(FleetError, match="not one the model was trained on"):
        enc.transform([table("zzz")], known=True)
    assert enc.transform([table("zzz")]).emb_ids.tolist() == [-1]
    extra = table("a", features={"x": np.zeros(6), "new_col": np.zeros(6)})
    with pytest.raises(FleetError, match="new_col"):
        enc.transform([extra])


def test_splits_keep_every_dataset_on_both_sides():
    tables = [table(f"d{i}", n=8) for i in range(5)]
    train, test = holdout_tables(tables, 0.25, seed=0)
    assert [t.n_rows for t in train] == [6] * 5 and [t.n_rows for t in test] == [2] * 5
    fleet = FleetEncoder.fit(tables).transform(tables)
    tr, va = split_rows(fleet, 0.25, seed=0)
    assert set(tr.dataset.tolist()) == set(va.dataset.tolist()) == set(range(5))
    folds = kfold_datasets(10, 5, seed=0)
    assert sorted(sum(folds, [])) == list(range(10)) and all(len(f) == 2 for f in folds)
    sub = fleet.datasets([3, 1])
    assert sub.names == ["d3", "d1"] and set(sub.dataset.tolist()) == {0, 1}
