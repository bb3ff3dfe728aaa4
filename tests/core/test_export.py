"""Generated weights for unseen datasets: standalone, saved with safetensors, same predictions."""

import numpy as np
import pytest
import torch

from hypernet_core import FleetEncoder, ModelConfig, TrainConfig, build_model, evaluate, fit
from hypernet_core.adapt import adapt
from hypernet_core.export import GeneratedModel, generate
from hypernet_core.synthetic import synthetic_fleet
from hypernet_core.train import predict


@pytest.fixture(scope="module")
def trained():
    tables = synthetic_fleet(30, rows=(60, 120), n_features=4, seed=7, own_effect=0.3)
    seen, new = tables[:24], tables[24:]
    enc = FleetEncoder.fit(seen)
    model = build_model("hypernetwork", ModelConfig(hidden=(32,)), enc.n_features, enc.meta_dim, 1, len(seen))
    fit(model, enc.transform(seen), TrainConfig(max_steps=150, progress=False, datasets_per_batch=16, accumulate=2))
    return model, enc, new


def _matrix(table, features):
    return np.stack([table.features.get(f, np.full(table.n_rows, np.nan)) for f in features], 1)


def test_zero_shot_weights_reproduce_the_hypernetwork(trained, tmp_path):
    model, enc, new = trained
    t = new[0]
    gen = generate(model, enc, t.name, t.meta)
    gen.save(tmp_path / "w.safetensors")
    loaded = GeneratedModel.load(tmp_path / "w.safetensors")
    assert loaded.spec["how"] == "zero-shot" and loaded.spec["features"] == enc.features
    fleet = enc.transform([t], known=False)
    expected = enc.decode_target(predict(model, fleet)[:, 0].numpy())
    np.testing.assert_allclose(loaded.predict(_matrix(t, enc.features)), expected, rtol=1e-4, atol=1e-4)


def test_few_shot_improves_with_more_rows(trained):
    model, enc, new = trained
    query = [type(t)(t.name, {f: v[30:] for f, v in t.features.items()}, t.target[30:], t.meta) for t in new]
    qf = enc.transform(query, known=False)
    scores = {}
    for k in (0, 5, 20):
        if k == 0:
            scores[k] = evaluate(model, qf).overall
            continue
        support = enc.transform([type(t)(t.name, {f: v[:k] for f, v in t.features.items()}, t.target[:k], t.meta)
                                 for t in new], known=False)
        a = adapt(model, support)
        scores[k] = evaluate(model, qf, a.emb).overall
    assert scores[20] >= scores[0] - 0.01
    assert scores[20] >= scores[5] - 0.01


def test_few_shot_on_rows_that_cannot_help_keeps_zero_shot(trained):
    model, enc, new = trained
    t = new[1]
    rng = np.random.default_rng(0)
    noise = type(t)(t.name, {f: v[:6] for f, v in t.features.items()}, rng.normal(size=6) * 50, t.meta)
    gen = generate(model, enc, t.name, t.meta, rows=noise)
    zero = generate(model, enc, t.name, t.meta)
    if gen.spec["how"].startswith("zero-shot"):
        for k in zero.weights:
            assert torch.equal(gen.weights[k], zero.weights[k])
    else:  # the fitted embedding won on held-out rows of this sample; it must then differ
        assert any(not torch.equal(gen.weights[k], zero.weights[k]) for k in zero.weights)
