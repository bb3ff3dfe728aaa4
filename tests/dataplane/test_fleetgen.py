"""The synthetic hospitals fleet has the problems real fleets have, deterministically."""

from __future__ import annotations

import numpy as np

from flows.fleetgen import BREAKERS, UNITS, make_broken_corpus, make_fleet, write_datasets
from flows.validation import load_contracts


def test_same_seed_same_bytes_other_seed_other_bytes():
    a, b, c = make_fleet(5, seed=7), make_fleet(5, seed=7), make_fleet(5, seed=8)
    assert [i.payload for i in a] == [i.payload for i in b]
    assert [i.payload for i in a] != [i.payload for i in c]
    assert [i.payload for i in make_broken_corpus(1)] == [i.payload for i in make_broken_corpus(1)]


def test_fleet_is_heterogeneous_like_real_sources():
    fleet = make_fleet(50, seed=0)
    contracts = [i.contract for i in fleet]
    column_names = {col for c in contracts for col in c.field_mapping}
    canonical = set(UNITS)
    assert len(column_names) > 2 * len(canonical)  # sources name the same feature differently
    assert any(set(c.features) != canonical for c in contracts)  # some features missing
    assert {"age_months", "chol_mmol", "glucose_mmol"} & column_names  # other units
    assert len({c.target for c in contracts}) > 1
    assert all(c.meta["region"] and c.meta["beds"] > 0 for c in contracts)  # declared meta-features
    assert {c.location.rsplit(".", 1)[1] for c in contracts} == {"csv", "parquet"}


def test_sizes_range_from_tens_to_thousands(tmp_path):
    contracts = write_datasets(make_fleet(50, seed=0), tmp_path)
    from flows.storage import Lake

    lake = Lake(tmp_path)
    rows = [len(lake.read_table(c.location)) for c in contracts]
    assert min(rows) < 100 and max(rows) > 1000
    assert all(np.isfinite(r) for r in rows)


def test_broken_corpus_covers_the_listed_defects():
    corpus = make_broken_corpus(0)
    defects = {i.defect for i in corpus}
    assert len(corpus) == len(BREAKERS) >= 20 and len({i.contract.name for i in corpus}) == len(corpus)
    assert {"missing_target", "all_nan_column", "strings_in_numeric", "empty_file", "duplicate_columns",
            "infinite_values", "undeclared_column", "wrong_delimiter", "truncated_parquet", "non_utf8_header",
            "single_value_target"} <= defects
    assert all(i.expect_check for i in corpus)


def test_manifest_round_trip_in_a_folder(tmp_path):
    items = make_fleet(3, seed=2)
    write_datasets(items, tmp_path)
    loaded = load_contracts(tmp_path / "contracts.json")
    assert [c.name for c in loaded] == [i.contract.name for i in items]
    assert all((tmp_path / i.filename).exists() for i in items)


def test_writing_to_the_lake(lake):
    items = make_fleet(2, seed=2) + make_broken_corpus(0)[-1:]  # the last one is the missing file
    contracts = write_datasets(items, lake)
    assert all(c.location.startswith(lake.root) for c in contracts)
    assert lake.exists(contracts[0].location) and not lake.exists(contracts[-1].location)
    assert lake.exists(lake.uri_for("contracts.json"))
