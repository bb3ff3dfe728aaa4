"""Publishing the hypernetwork's versions and per-dataset weights, with lineage read back."""

from __future__ import annotations

import pytest
from catalog_testkit import register

from catalog import Catalog, CatalogError

GROUP = "hypernet-fleet"


def test_a_model_version_reads_back_with_lineage_to_its_training_data(catalog: Catalog, lake) -> None:
    a, b = register(catalog, lake, "a"), register(catalog, lake, "b")
    urn = catalog.publish_model(
        GROUP, 3, {"r2": 0.238, "bwt": -0.01}, {"lr": 0.001, "epochs": 40}, ["champion"], [a.urn, b.urn],
        location="models:/hypernet-fleet/3",
    )
    assert urn == "urn:li:mlModel:(urn:li:dataPlatform:mlflow,hypernet-fleet_3,PROD)"
    model = catalog.read_lineage(urn)
    assert model.trained_on == (a.urn, b.urn)
    assert model.training_jobs == ("urn:li:dataJob:(urn:li:dataFlow:(prefect,hypernet-fleet-training,PROD),train-3)",)
    assert model.group_urn == "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,hypernet-fleet,PROD)"
    assert (model.version, model.aliases, model.location) == ("3", ("champion",), "models:/hypernet-fleet/3")
    assert model.metrics == {"r2": 0.238, "bwt": -0.01}
    assert model.hyper_params == {"lr": "0.001", "epochs": "40"}


def test_an_alias_moves_to_the_newest_version_that_claims_it(catalog: Catalog, lake) -> None:
    a = register(catalog, lake, "a")
    v1 = catalog.publish_model(GROUP, 1, {"r2": 0.2}, {}, ["champion"], [a.urn])
    v2 = catalog.publish_model(GROUP, 2, {"r2": 0.3}, {}, ["champion", "latest"], [a.urn])
    assert catalog.read_lineage(v1).aliases == ()
    assert catalog.read_lineage(v2).aliases == ("champion", "latest")
    assert [(m.version, m.aliases) for m in catalog.list_models(GROUP)] == [("1", ()), ("2", ("champion", "latest"))]


def test_generated_weights_are_linked_to_their_dataset(catalog: Catalog, lake) -> None:
    a, b = register(catalog, lake, "a"), register(catalog, lake, "b")
    model = catalog.publish_model(GROUP, 2, {"r2": 0.3}, {}, ["champion"], [a.urn])
    weights = catalog.publish_generated_weights(
        b.urn, 2, lake / "weights" / "b.safetensors", {"r2_few_shot": 0.21}, group_name=GROUP
    )
    record = catalog.read_lineage(weights)
    assert record.trained_on == (b.urn,)
    assert record.location == f"{lake}/weights/b.safetensors"
    assert record.properties["generated_by"] == model and record.properties["dataset"] == b.urn
    assert (record.version, record.metrics) == ("2", {"r2_few_shot": 0.21})
    assert [m.urn for m in catalog.list_models(GROUP, generated_weights=True)] == [weights]
    assert [m.urn for m in catalog.list_models(GROUP)] == [model]


def test_publishing_on_unregistered_data_is_refused_and_publishes_nothing(catalog: Catalog, lake) -> None:
    ghost = f"urn:li:dataset:(urn:li:dataPlatform:file,{lake}/ghost.parquet,PROD)"
    with pytest.raises(CatalogError, match=r"model hypernet-fleet v1: trained on .*ghost.parquet.*not registered"):
        catalog.publish_model(GROUP, 1, {"r2": 0.2}, {}, [], [ghost])
    assert catalog.list_models(GROUP) == []
    with pytest.raises(CatalogError, match="not registered"):
        catalog.publish_generated_weights(ghost, 1, lake / "w.safetensors", {}, group_name=GROUP)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": {"r2": "high"}}, "metric 'r2' must be a number"),
        ({"version": "v 1"}, "model version 'v 1' is not usable"),
        ({"aliases": ["champ ion"]}, "model alias 'champ ion'"),
    ],
)
def test_bad_model_inputs_are_refused(catalog: Catalog, lake, kwargs: dict, message: str) -> None:
    a = register(catalog, lake, "a")
    call = {"group_name": GROUP, "version": 1, "metrics": {"r2": 0.2}, "hyper_params": {}, "trained_on_urns": [a.urn]}
    with pytest.raises(CatalogError, match=message):
        catalog.publish_model(**{**call, **kwargs})
    assert catalog.list_models(GROUP) == []


def test_weights_outside_the_lake_are_refused(catalog: Catalog, lake, tmp_path) -> None:
    a = register(catalog, lake, "a")
    with pytest.raises(CatalogError, match=r"weights of a.*outside the data lake"):
        catalog.publish_generated_weights(a.urn, 1, tmp_path / "elsewhere.safetensors", {}, group_name=GROUP)
