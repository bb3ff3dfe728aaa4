"""The batched hypernetwork against a plain per-dataset loop, and its start-up guarantees."""

import pytest
import torch
import torch.nn.functional as F

from hypernet_core import UNKNOWN, Conditioning, FleetEncoder, HyperNetwork, ModelConfig
from hypernet_core.synthetic import synthetic_fleet
from hypernet_core.train import batch_inputs


def _fleet(n=12):
    tables = synthetic_fleet(n, rows=(5, 30), n_features=4, missing_features=0.3, seed=1)
    enc = FleetEncoder.fit(tables)
    return enc, enc.transform(tables)


def _model(enc, n, **cfg):
    model = HyperNetwork(ModelConfig(hidden=(16, 8), **cfg), enc.n_features, enc.meta_dim, enc.out_dim, n)
    for head in model.heads.values():  # move the generator off its zero start so updates matter
        for p in head.parameters():
            torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def reference_loop(model: HyperNetwork, fleet, rows):
    """What tutorial code does: for each dataset, generate its full weights and run a plain MLP."""
    out = torch.zeros(len(rows), model.target.sizes[-1])
    for d in fleet.dataset[rows].unique():
        sel = fleet.dataset[rows] == d
        cond = Conditioning(fleet.emb_ids[d].view(1), fleet.meta[d].view(1, -1))
        w = model.generate_weights(cond)[0]
        h = torch.cat([fleet.x[rows][sel] * fleet.mask[rows][sel], fleet.mask[rows][sel]], -1)
        n_layers = len(model.target.layers)
        for l in range(n_layers):
            h = F.linear(h, w[f"layers.{l}.weight"], w[f"layers.{l}.bias"])
            if l < n_layers - 1:
                if f"norms.{l}.running_mean" in w:
                    h = F.batch_norm(h, w[f"norms.{l}.running_mean"], w[f"norms.{l}.running_var"],
                                     w[f"norms.{l}.weight"], w[f"norms.{l}.bias"], training=False)
                h = F.gelu(h)
        out[sel] = h
    return out


@pytest.mark.parametrize("cfg", [
    {},
    {"generation": "full"},
    {"generate": "last"},
    {"generate": "all", "rank": 2},
    {"generate": "all", "generation": "full", "batchnorm": True},
    {"encoder": "transformer"},
    {"batchnorm": True},
])
def test_batched_forward_matches_per_dataset_loop(cfg):
    enc, fleet = _fleet()
    model = _model(enc, fleet.n_datasets, **cfg)
    rows = torch.randperm(len(fleet))[:150]  # a batch that mixes every dataset
    x, mask, group, cond = batch_inputs(fleet, rows)
    with torch.no_grad():
        batched, _ = model(x, mask, group, cond)
    torch.testing.assert_close(batched, reference_loop(model, fleet, rows), atol=1e-5, rtol=1e-5)


def test_dense_and_gather_paths_agree(monkeypatch):
    import hypernet_core.target as target

    enc, fleet = _fleet()
    model = _model(enc, fleet.n_datasets)
    x, mask, group, cond = batch_inputs(fleet, torch.arange(len(fleet)))
    with torch.no_grad():
        dense, _ = model(x, mask, group, cond)
        monkeypatch.setattr(target, "DENSE_LIMIT", 0)
        gathered, _ = model(x, mask, group, cond)
    torch.testing.assert_close(dense, gathered, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("generation", ["lowrank", "full"])
def test_step_zero_equals_the_shared_model(generation):
    enc, fleet = _fleet()
    model = HyperNetwork(ModelConfig(generation=generation, generate="all"), enc.n_features, enc.meta_dim,
                         enc.out_dim, fleet.n_datasets).eval()
    x, mask, group, cond = batch_inputs(fleet, torch.arange(len(fleet)))
    with torch.no_grad():
        out, penalty = model(x, mask, group, cond)
        shared = model.target(torch.cat([x * mask, mask], -1))
    assert torch.equal(out, shared)
    assert penalty.item() == 0.0


def test_parameter_counts_report_both_networks():
    enc, fleet = _fleet()
    model = HyperNetwork(ModelConfig(), enc.n_features, enc.meta_dim, enc.out_dim, fleet.n_datasets)
    counts = model.parameter_counts()
    assert counts["target"] == sum(p.numel() for p in model.target.parameters())
    assert counts["hypernetwork"] > 0 and counts["total"] == counts["target"] + counts["hypernetwork"]


def test_generated_layers_follow_the_config():
    enc, fleet = _fleet()
    sizes = dict(n_features=enc.n_features, meta_dim=enc.meta_dim, out_dim=1, n_datasets=fleet.n_datasets)
    assert HyperNetwork(ModelConfig(hidden=(8, 8)), **sizes).generated == {0}
    assert HyperNetwork(ModelConfig(hidden=(8, 8), generate="last"), **sizes).generated == {2}
    assert HyperNetwork(ModelConfig(hidden=(8, 8), generate="all"), **sizes).generated == {0, 1, 2}


def test_unknown_dataset_id_is_refused_and_unknown_marker_works():
    enc, fleet = _fleet()
    model = _model(enc, fleet.n_datasets)
    x, mask = fleet.x[:3], fleet.mask[:3]
    group = torch.zeros(3, dtype=torch.long)
    with pytest.raises(IndexError, match="unknown dataset id 99"):
        model(x, mask, group, Conditioning(torch.tensor([99]), fleet.meta[:1]))
    out, _ = model(x, mask, group, Conditioning(torch.tensor([UNKNOWN]), fleet.meta[:1]))
    assert torch.isfinite(out).all()
