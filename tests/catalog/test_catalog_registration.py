"""Registering datasets and reading them back, on Lite (SQLite, DuckDB) and on the server stand-in."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from catalog_testkit import FIELDS, META, register
from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.metadata.schema_classes import (
    EditableSchemaFieldInfoClass,
    EditableSchemaMetadataClass,
    GlobalTagsClass,
    GlossaryTermAssociationClass,
    GlossaryTermsClass,
    AuditStampClass,
    TagAssociationClass,
)

from catalog import Catalog, Field


def test_register_reads_back_everything(catalog: Catalog, lake) -> None:
    before = datetime.now(timezone.utc)
    record = register(catalog, lake, "1224", field_mapping={"SES": "ses"}, description="School 1224")
    assert record.urn == f"urn:li:dataset:(urn:li:dataPlatform:file,{lake}/hsb/1224.parquet,PROD)"
    assert (record.name, record.location, record.platform) == ("1224", f"{lake}/hsb/1224.parquet", "file")
    assert record.fields == tuple(Field(n, t) for n, t in FIELDS)
    assert (record.target, record.task_type, record.description) == ("MathAch", "regression", "School 1224")
    assert record.meta == META and isinstance(record.meta["Size"], int) and record.meta["urban"] is True
    assert record.field_mapping == {"SES": "ses", "Minority": "Minority", "Sex": "Sex"}
    assert before <= record.registered_at <= datetime.now(timezone.utc)
    assert (record.validation, record.onboarding, record.stats, record.updated_at) == (None, None, {}, None)
    assert catalog.get(record.urn) == record


def test_reregistering_the_same_dataset_updates_it_without_duplicating(catalog: Catalog, lake) -> None:
    first = register(catalog, lake, "1224")
    catalog.set_validation(first.urn, True, "ok", {"n_rows": 47})
    catalog.set_onboarding(first.urn, "1")
    again = register(catalog, lake, "1224")
    assert [r.urn for r in catalog.list_fleet()] == [first.urn]
    assert again.registered_at == first.registered_at
    assert again.validation is not None and again.onboarding is not None, "identical data keeps its status"
    assert again.stats == {"n_rows": 47} and again.updated_at is None


def test_a_changed_contract_updates_the_entry_and_drops_stale_status(catalog: Catalog, lake) -> None:
    first = register(catalog, lake, "1224", field_mapping={"SES": "ses"})
    catalog.set_validation(first.urn, True, "ok", {"n_rows": 47})
    catalog.set_onboarding(first.urn, "1")
    changed = register(catalog, lake, "1224", meta={**META, "Size": 900}, field_mapping={"SES": "ses"})
    assert changed.meta["Size"] == 900
    assert changed.registered_at == first.registered_at
    assert changed.updated_at is not None and changed.updated_at > first.registered_at
    assert (changed.validation, changed.onboarding, changed.stats) == (None, None, {})
    assert len(catalog.list_fleet()) == 1


def test_heterogeneous_columns_map_to_canonical_glossary_terms(catalog: Catalog, lake) -> None:
    a = register(catalog, lake, "a", field_mapping={"SES": "ses"})
    b = register(
        catalog,
        lake,
        "b",
        fields=[("socio_economic", "float64"), ("score", "float64")],
        target="score",
        field_mapping={"socio_economic": "ses"},
    )
    assert a.field_mapping["SES"] == b.field_mapping["socio_economic"] == "ses"
    assert b.feature_columns == ("socio_economic",)
    term = catalog._store.aspects("urn:li:glossaryTerm:hypernet.ses", ["glossaryTermInfo"])["glossaryTermInfo"]
    assert term.name == "ses" and term.parentNode == "urn:li:glossaryNode:hypernet"


def test_a_term_set_in_the_datahub_ui_wins(catalog: Catalog, lake) -> None:
    record = register(catalog, lake, "1224", field_mapping={"SES": "ses"})
    ui_edit = EditableSchemaMetadataClass(
        editableSchemaFieldInfo=[
            EditableSchemaFieldInfoClass(
                fieldPath="Sex",
                glossaryTerms=GlossaryTermsClass(
                    terms=[GlossaryTermAssociationClass("urn:li:glossaryTerm:hypernet.gender")],
                    auditStamp=AuditStampClass(time=0, actor="urn:li:corpuser:someone"),
                ),
            )
        ]
    )
    catalog._store.emit([MetadataChangeProposalWrapper(entityUrn=record.urn, aspect=ui_edit)])
    assert catalog.get(record.urn).field_mapping == {"SES": "ses", "Minority": "Minority", "Sex": "gender"}


def test_tags_added_by_others_survive_reregistration(catalog: Catalog, lake) -> None:
    record = register(catalog, lake, "1224")
    tags = GlobalTagsClass(tags=[TagAssociationClass("urn:li:tag:pii"), TagAssociationClass("urn:li:tag:hypernet")])
    catalog._store.emit([MetadataChangeProposalWrapper(entityUrn=record.urn, aspect=tags)])
    register(catalog, lake, "1224", meta={"Size": 1})
    stored = catalog._store.aspects(record.urn, ["globalTags"])["globalTags"]
    assert sorted(t.tag for t in stored.tags) == ["urn:li:tag:hypernet", "urn:li:tag:pii"]


def test_s3_locations_register_on_the_s3_platform(catalog: Catalog) -> None:
    cat = Catalog(catalog._store, lake="s3://fleet/lake")
    record = cat.register_dataset(
        "s3://fleet/lake/hsb/1224.parquet", FIELDS, target="MathAch", task_type="regression", meta={}
    )
    assert record.urn == "urn:li:dataset:(urn:li:dataPlatform:s3,fleet/lake/hsb/1224.parquet,PROD)"
    assert (record.platform, record.location, record.meta) == ("s3", "s3://fleet/lake/hsb/1224.parquet", {})
    assert record.registered_at > datetime.now(timezone.utc) - timedelta(minutes=1)
