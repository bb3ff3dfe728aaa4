"""Reading the fleet, watermarks, onboarding state and status written back by the flows."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from catalog_testkit import register

from catalog import Catalog, CatalogError


def test_the_fleet_is_the_datasets_with_the_fleet_tag(catalog: Catalog, lake) -> None:
    a = register(catalog, lake, "a")
    b = register(catalog, lake, "b")
    other_fleet = Catalog(catalog._store, fleet_tag="other-fleet", lake=str(lake))
    c = register(other_fleet, lake, "c")
    assert [r.urn for r in catalog.list_fleet()] == [a.urn, b.urn]
    assert [r.urn for r in other_fleet.list_fleet()] == [c.urn]
    assert [r.meta["Size"] for r in catalog.list_fleet()] == [842, 842]


def test_registered_after_a_watermark(catalog: Catalog, lake) -> None:
    a = register(catalog, lake, "a")
    watermark = datetime.now(timezone.utc)
    b = register(catalog, lake, "b")
    assert [r.name for r in catalog.registered_after(watermark)] == ["b"]
    assert [r.name for r in catalog.registered_after(a.registered_at)] == ["b"], "strictly after"
    naive_utc = watermark.replace(tzinfo=None)
    assert [r.name for r in catalog.registered_after(naive_utc)] == ["b"]
    assert catalog.registered_after(b.registered_at) == []


def test_not_onboarded(catalog: Catalog, lake) -> None:
    a = register(catalog, lake, "a")
    register(catalog, lake, "b")
    when = datetime(2026, 12, 1, 8, 30, tzinfo=timezone.utc)
    onboarded = catalog.set_onboarding(a.urn, "1", when=when)
    assert (onboarded.onboarding.model_version, onboarded.onboarding.at) == ("1", when)
    assert [r.name for r in catalog.not_onboarded()] == ["b"]
    assert [r.name for r in catalog.not_onboarded("1")] == ["b"]
    assert [r.name for r in catalog.not_onboarded("2")] == ["a", "b"]


def test_validation_and_statistics_are_written_back(catalog: Catalog, lake) -> None:
    record = register(catalog, lake, "a")
    passed = catalog.set_validation(record.urn, True, "12 expectations met", {"n_rows": 47, "target_mean": 12.5})
    assert passed.validation.ok and passed.validation.reason == "12 expectations met"
    assert passed.stats == {"n_rows": 47, "target_mean": 12.5}
    failed = catalog.set_validation(record.urn, False, "SES has 3 nulls", {"null_ses": 3})
    assert not failed.validation.ok and failed.validation.reason == "SES has 3 nulls"
    assert failed.stats == {"null_ses": 3}, "new statistics replace the old ones"
    assert failed.meta == record.meta and failed.target == record.target, "the contract is untouched"


def test_status_for_an_unknown_dataset_is_refused(catalog: Catalog, lake) -> None:
    unknown = f"urn:li:dataset:(urn:li:dataPlatform:file,{lake}/nope.parquet,PROD)"
    with pytest.raises(CatalogError, match=r"nope.parquet.*not registered.*hypernet catalog register"):
        catalog.set_validation(unknown, True, "ok")
    with pytest.raises(CatalogError, match="not registered"):
        catalog.get(unknown)


def test_a_bad_statistic_changes_nothing(catalog: Catalog, lake) -> None:
    record = register(catalog, lake, "a")
    catalog.set_validation(record.urn, True, "ok", {"n_rows": 47})
    with pytest.raises(CatalogError, match=r"statistic 'hist' must be a single"):
        catalog.set_validation(record.urn, False, "bad", {"hist": [1, 2, 3]})
    assert catalog.get(record.urn).validation.ok and catalog.get(record.urn).stats == {"n_rows": 47}
