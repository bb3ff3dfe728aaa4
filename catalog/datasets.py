"""Fleet datasets as DataHub aspects, and DataHub aspects back as `DatasetRecord`s.

Pure functions: no I/O, so both backends share them and they are easy to test.

Aspects written per dataset:
  schemaMetadata     columns and types; a mapped column carries a glossary term (its canonical feature)
  datasetProperties  display name, description, location, and the learning contract + status
                     as custom properties (see `catalog.contract`)
  globalTags         the fleet tag (other tags a user added in DataHub are kept)
Canonical features are glossary terms `<fleet_tag>.<feature>` under the glossary node `<fleet_tag>`;
a term a user sets on a column in the DataHub UI (editableSchemaMetadata) wins over ours.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.metadata.schema_classes import (
    AuditStampClass,
    DatasetPropertiesClass,
    EditableSchemaMetadataClass,
    GlobalTagsClass,
    GlossaryNodeInfoClass,
    GlossaryTermAssociationClass,
    GlossaryTermInfoClass,
    GlossaryTermsClass,
    SchemalessClass,
    SchemaFieldClass,
    SchemaMetadataClass,
    TagAssociationClass,
    TagPropertiesClass,
)
from datahub.metadata.urns import DataPlatformUrn, GlossaryNodeUrn, GlossaryTermUrn, TagUrn

from catalog import contract as c
from catalog.errors import CatalogError
from catalog.locations import Location, check_inside_lake, location_from_urn, parse_location
from catalog.records import TASK_TYPES, DatasetRecord, Field, Onboarding, Scalar, Validation
from catalog.schema import coerce_fields, datahub_type

log = logging.getLogger(__name__)

DATASET_ASPECTS = ["datasetProperties", "schemaMetadata", "editableSchemaMetadata", "globalTags"]
_CONTRACT_PREFIXES = (c.META, c.text_keys_property(c.META))
ACTOR = "urn:li:corpuser:hypernet"


@dataclass(frozen=True)
class Registration:
    """A validated `register_dataset` call."""

    loc: Location
    name: str
    fields: tuple[Field, ...]
    target: str
    task_type: str
    meta: dict[str, Scalar]
    field_mapping: dict[str, str]  # only the columns given a canonical feature explicitly
    description: str | None


def validate(
    location: str | Path,
    fields: Sequence[Field | tuple[str, str]],
    target: str,
    task_type: str,
    meta: Mapping[str, Scalar],
    mapping: Mapping[str, str],
    description: str | None,
    name: str | None,
    lake: str | None,
) -> Registration:
    """Check a registration completely before anything is written, naming the dataset and the fix."""
    loc = parse_location(location)
    label = name or loc.stem
    if name is not None:
        c.check_name("dataset name", name, "name datasets like 'school_1224'")
    check_inside_lake(loc, lake, label)
    cols = coerce_fields(fields, label)
    names = [f.name for f in cols]
    if target not in names:
        raise CatalogError(
            f"dataset {label!r}: target column {target!r} is not among its columns {names}; "
            "pass the name of the column to predict as the target"
        )
    if task_type not in TASK_TYPES:
        raise CatalogError(f"dataset {label!r}: task type {task_type!r} is not one of {list(TASK_TYPES)}")
    if not isinstance(meta, Mapping):
        raise CatalogError(f"dataset {label!r}: meta-features must be a mapping name -> scalar value")
    c.encode_group(c.META, meta, label)  # raises on a key or value that can't be stored
    _check_mapping(label, names, mapping)
    return Registration(loc, label, cols, target, task_type, dict(meta), dict(mapping), description)


def _check_mapping(label: str, names: list[str], mapping: Mapping[str, str]) -> None:
    for column, canonical in mapping.items():
        if column not in names:
            raise CatalogError(
                f"dataset {label!r}: field mapping names column {column!r}, which is not among {names}; "
                "map existing columns only"
            )
        c.check_name(f"dataset {label!r}: canonical feature for column {column!r}", canonical, "e.g. 'ses'")
    canon = list(mapping.values())
    clashes = sorted({x for x in canon if canon.count(x) > 1})
    if clashes:
        raise CatalogError(
            f"dataset {label!r}: several columns map to the canonical feature(s) {clashes}; "
            "map at most one column of a dataset to each canonical feature"
        )


def merged_contract(old: Mapping[str, str], contract: Mapping[str, str], registered_at: datetime) -> dict[str, str]:
    """The new contract over the old properties; status and keys added by others are kept."""
    kept = {k: v for k, v in old.items() if k not in c.CONTRACT_KEYS and not k.startswith(_CONTRACT_PREFIXES)}
    return {**kept, **contract, c.REGISTERED_AT: c.encode_time(registered_at)}


def changed(old_schema: object, new_schema: SchemaMetadataClass, old: Mapping[str, str], new: Mapping[str, str]) -> bool:
    """Whether the data as registered changed (schema or learning contract), making old status stale."""

    def contract(props: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in props.items() if k in c.CONTRACT_KEYS or k.startswith(_CONTRACT_PREFIXES)}

    old_obj = old_schema.to_obj() if isinstance(old_schema, SchemaMetadataClass) else None
    return old_obj != new_schema.to_obj() or contract(old) != contract(new)


def term_urn(fleet_tag: str, canonical: str) -> str:
    return str(GlossaryTermUrn(f"{fleet_tag}.{canonical}"))


def canonical_of(fleet_tag: str, term: str) -> str | None:
    """`urn:li:glossaryTerm:hypernet.ses` -> `ses`; terms outside the fleet's glossary don't map."""
    prefix = term_urn(fleet_tag, "")
    return term[len(prefix) :] if term.startswith(prefix) and len(term) > len(prefix) else None


def contract_properties(reg: Registration) -> dict[str, str]:
    return {c.TARGET: reg.target, c.TASK_TYPE: reg.task_type, **c.encode_group(c.META, reg.meta, reg.name)}


def schema_aspect(reg: Registration, fleet_tag: str, stamp_ms: int) -> SchemaMetadataClass:
    def field(f: Field) -> SchemaFieldClass:
        canonical = reg.field_mapping.get(f.name)
        terms = None
        if canonical is not None:
            terms = GlossaryTermsClass(
                terms=[GlossaryTermAssociationClass(urn=term_urn(fleet_tag, canonical))],
                auditStamp=AuditStampClass(time=stamp_ms, actor=ACTOR),
            )
        return SchemaFieldClass(
            fieldPath=f.name,
            type=datahub_type(f.native_type),
            nativeDataType=f.native_type,
            nullable=f.nullable,
            glossaryTerms=terms,
        )

    return SchemaMetadataClass(
        schemaName=reg.name,
        platform=str(DataPlatformUrn(reg.loc.platform)),
        version=0,
        hash="",
        platformSchema=SchemalessClass(),
        fields=[field(f) for f in reg.fields],
    )


def properties_aspect(reg: Registration, custom: Mapping[str, str]) -> DatasetPropertiesClass:
    return DatasetPropertiesClass(
        name=reg.name,
        qualifiedName=reg.loc.uri,
        description=reg.description,
        customProperties=dict(sorted(custom.items())),
    )


def tags_aspect(existing: GlobalTagsClass | None, fleet_tag: str) -> GlobalTagsClass:
    tag = str(TagUrn(fleet_tag))
    tags = list(existing.tags) if existing else []
    if all(t.tag != tag for t in tags):
        tags.append(TagAssociationClass(tag=tag))
    return GlobalTagsClass(tags=tags)


def glossary_mcps(fleet_tag: str, canonicals: set[str]) -> list[MetadataChangeProposalWrapper]:
    """The fleet's tag, glossary node and the terms used, so DataHub can show and browse them."""
    node = str(GlossaryNodeUrn(fleet_tag))
    mcps = [
        MetadataChangeProposalWrapper(
            entityUrn=str(TagUrn(fleet_tag)),
            aspect=TagPropertiesClass(name=fleet_tag, description="Member of the hypernetwork fleet."),
        )
    ]
    if canonicals:
        mcps.append(
            MetadataChangeProposalWrapper(
                entityUrn=node,
                aspect=GlossaryNodeInfoClass(
                    name=fleet_tag, definition="Canonical features shared across the fleet's datasets."
                ),
            )
        )
    for canonical in sorted(canonicals):
        mcps.append(
            MetadataChangeProposalWrapper(
                entityUrn=term_urn(fleet_tag, canonical),
                aspect=GlossaryTermInfoClass(
                    name=canonical,
                    definition=f"Canonical feature {canonical!r}: columns carrying this term mean the same thing.",
                    termSource="INTERNAL",
                    parentNode=node,
                ),
            )
        )
    return mcps


def is_fleet_member(aspects: Mapping[str, object], fleet_tag: str) -> bool:
    tags = aspects.get("globalTags")
    return isinstance(tags, GlobalTagsClass) and any(t.tag == str(TagUrn(fleet_tag)) for t in tags.tags)


def _field_terms(fleet_tag: str, aspects: Mapping[str, object]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    schema = aspects.get("schemaMetadata")
    editable = aspects.get("editableSchemaMetadata")
    sources = []
    if isinstance(schema, SchemaMetadataClass):
        sources.append([(f.fieldPath, f.glossaryTerms) for f in schema.fields])
    if isinstance(editable, EditableSchemaMetadataClass):  # UI edits win: applied last
        sources.append([(f.fieldPath, f.glossaryTerms) for f in editable.editableSchemaFieldInfo])
    for pairs in sources:
        for path, terms in pairs:
            canon = [x for x in (canonical_of(fleet_tag, t.urn) for t in (terms.terms if terms else [])) if x]
            if canon:
                mapping[path] = canon[0]
    return mapping


def _fields(aspects: Mapping[str, object]) -> tuple[Field, ...]:
    schema = aspects.get("schemaMetadata")
    if not isinstance(schema, SchemaMetadataClass):
        return ()
    return tuple(Field(f.fieldPath, f.nativeDataType, bool(f.nullable)) for f in schema.fields)


def record_from_aspects(urn: str, aspects: Mapping[str, object], fleet_tag: str) -> DatasetRecord | None:
    """None when the entity has no learning contract (e.g. tagged by hand without a target)."""
    props = aspects.get("datasetProperties")
    if not isinstance(props, DatasetPropertiesClass):
        return None
    custom = dict(props.customProperties or {})
    missing = [k for k in (c.TARGET, c.TASK_TYPE, c.REGISTERED_AT) if not custom.get(k)]
    if missing:
        log.warning("skipping %s: custom properties %s missing; re-register it with `hypernet catalog register`", urn, missing)
        return None
    loc = location_from_urn(urn)
    fields = _fields(aspects)
    target = custom[c.TARGET]
    terms = _field_terms(fleet_tag, aspects)
    mapping = {f.name: terms.get(f.name, f.name) for f in fields if f.name != target}
    validation = None
    if custom.get(c.VALIDATION):
        validation = Validation(
            ok=custom[c.VALIDATION] == "passed",
            reason=custom.get(c.VALIDATION_REASON, ""),
            at=c.decode_time(custom.get(c.VALIDATED_AT)) or c.utcnow(),
        )
    onboarding = None
    if custom.get(c.ONBOARDED_VERSION):
        onboarding = Onboarding(
            model_version=custom[c.ONBOARDED_VERSION],
            at=c.decode_time(custom.get(c.ONBOARDED_AT)) or c.utcnow(),
        )
    return DatasetRecord(
        urn=urn,
        name=props.name or loc.stem,
        location=loc.uri,
        platform=loc.platform,
        fields=fields,
        target=target,
        task_type=custom[c.TASK_TYPE],
        meta=c.decode_group(c.META, custom),
        field_mapping=mapping,
        registered_at=c.decode_time(custom[c.REGISTERED_AT]),  # type: ignore[arg-type]
        updated_at=c.decode_time(custom.get(c.UPDATED_AT)),
        description=props.description,
        validation=validation,
        stats=c.decode_group(c.STAT, custom),
        onboarding=onboarding,
    )
