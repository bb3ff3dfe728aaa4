"""`Catalog`: the fleet's source of truth, the same on DataHub Lite and on a DataHub server.

Everything here is written against `Store` (four operations), so both backends have every
feature. Inputs are validated before anything is written: a bad call changes nothing.
Status written back by the flows (validation, statistics, onboarding) lives next to the learning
contract in `datasetProperties.customProperties` and is updated read-modify-write, keeping keys
that others (or DataHub users) added.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from datahub.emitter.mcp import MetadataChangeProposalWrapper as MCPW
from datahub.metadata.schema_classes import DatasetPropertiesClass
from datahub.metadata.urns import TagUrn

from catalog import contract as c
from catalog import datasets as ds
from catalog import models as md
from catalog.errors import CatalogError
from catalog.contract import check_name
from catalog.locations import check_inside_lake, parse_location
from catalog.records import DatasetRecord, Field, ModelRecord, Scalar
from catalog.store import Store

log = logging.getLogger(__name__)
def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


class Catalog:
    """Register fleet datasets, read the fleet, write status back, publish models with lineage."""

    def __init__(self, store: Store, fleet_tag: str = "hypernet", lake: str | None = None) -> None:
        self._store = store
        self.fleet_tag = check_name("fleet tag", fleet_tag, "set catalog.fleet_tag")
        self.lake = lake
        self.where = store.where

    # ---- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            self.close()
        except CatalogError:
            if exc_type is None:
                raise
            log.warning("closing the catalog failed too, after the error above", exc_info=True)

    # ---- registration ----------------------------------------------------------------------
    def register_dataset(
        self,
        location: str | Path,
        fields: Sequence[Field | tuple[str, str]],
        target: str,
        task_type: str,
        meta: Mapping[str, Scalar],
        field_mapping: Mapping[str, str] | None = None,
        description: str | None = None,
        name: str | None = None,
    ) -> DatasetRecord:
        """Create or update the dataset at `location`; its URN is derived from the location.

        Registering the same location again updates the entry. If the schema or the learning
        contract changed, the old status (validation, statistics, onboarding) is dropped because it
        described other data; registering identical inputs again changes nothing.
        """
        reg = ds.validate(location, fields, target, task_type, meta, field_mapping or {}, description, name, self.lake)
        urn = reg.loc.urn
        existing = self._store.aspects(urn, ds.DATASET_ASPECTS, dataset=reg.name)
        old_props = existing.get("datasetProperties")
        old_custom = dict(old_props.customProperties or {}) if isinstance(old_props, DatasetPropertiesClass) else {}
        now = c.utcnow()
        registered_at = c.decode_time(old_custom.get(c.REGISTERED_AT)) or now
        schema = ds.schema_aspect(reg, self.fleet_tag, _ms(registered_at))
        custom = ds.merged_contract(old_custom, ds.contract_properties(reg), registered_at)
        if old_custom and ds.changed(existing.get("schemaMetadata"), schema, old_custom, custom):
            custom = {k: v for k, v in custom.items() if k not in c.STATUS_KEYS}
            custom = c.without_group(c.STAT, custom)
            custom[c.UPDATED_AT] = c.encode_time(now)
        mcps = [
            *ds.glossary_mcps(self.fleet_tag, set(reg.field_mapping.values())),
            MCPW(entityUrn=urn, aspect=schema),
            MCPW(entityUrn=urn, aspect=ds.tags_aspect(existing.get("globalTags"), self.fleet_tag)),  # type: ignore[arg-type]
            MCPW(entityUrn=urn, aspect=ds.properties_aspect(reg, custom)),  # last: completes the entry
        ]
        self._store.emit(mcps, dataset=reg.name)
        return self.get(urn)

    # ---- reading the fleet -----------------------------------------------------------------
    def list_fleet(self) -> list[DatasetRecord]:
        """Every dataset carrying the fleet tag and a learning contract, oldest registration first."""
        records = []
        for urn in self._store.incoming(str(TagUrn(self.fleet_tag)), "TaggedWith"):
            if not urn.startswith("urn:li:dataset:"):
                continue
            aspects = self._store.aspects(urn, ds.DATASET_ASPECTS)
            record = ds.record_from_aspects(urn, aspects, self.fleet_tag) if ds.is_fleet_member(aspects, self.fleet_tag) else None
            if record:
                records.append(record)
        return sorted(records, key=lambda r: (r.registered_at, r.name))

    def get(self, urn: str) -> DatasetRecord:
        record = ds.record_from_aspects(urn, self._store.aspects(urn, ds.DATASET_ASPECTS), self.fleet_tag)
        if record is None:
            raise CatalogError(self._unknown(urn))
        return record

    def registered_after(self, watermark: datetime) -> list[DatasetRecord]:
        """Datasets first registered strictly after `watermark` (a naive time is taken as UTC)."""
        mark = c.decode_time(c.encode_time(watermark))
        return [r for r in self.list_fleet() if r.registered_at > mark]  # type: ignore[operator]

    def not_onboarded(self, current_model_version: str | None = None) -> list[DatasetRecord]:
        """Datasets without generated weights, or (given a version) without weights from that version."""
        return [
            r
            for r in self.list_fleet()
            if r.onboarding is None or (current_model_version and r.onboarding.model_version != current_model_version)
        ]

    def _unknown(self, urn: str) -> str:
        return (
            f"dataset {urn} is not registered in the catalog ({self.where}); "
            "register it first (`hypernet catalog register` or `hypernet catalog import`)"
        )

    # ---- status written back by the flows --------------------------------------------------
    def set_validation(
        self, urn: str, ok: bool, reason: str, stats: Mapping[str, Scalar] | None = None, when: datetime | None = None
    ) -> DatasetRecord:
        """Record a validation verdict and the statistics computed on the data (replacing older ones)."""
        encoded = c.encode_group(c.STAT, stats or {}, urn)

        def update(custom: dict[str, str]) -> dict[str, str]:
            custom = c.without_group(c.STAT, custom)
            custom.update(encoded)
            custom[c.VALIDATION] = "passed" if ok else "failed"
            custom[c.VALIDATION_REASON] = str(reason)
            custom[c.VALIDATED_AT] = c.encode_time(when or c.utcnow())
            return custom

        return self._update_properties(urn, update)

    def set_onboarding(self, urn: str, model_version: str | int, when: datetime | None = None) -> DatasetRecord:
        """Record which hypernetwork version generated this dataset's weights, and when."""
        model_version = check_name("model version", str(model_version), "use the registry's version, e.g. '3'")

        def update(custom: dict[str, str]) -> dict[str, str]:
            custom[c.ONBOARDED_VERSION] = model_version
            custom[c.ONBOARDED_AT] = c.encode_time(when or c.utcnow())
            return custom

        return self._update_properties(urn, update)

    def _update_properties(self, urn: str, update: Callable[[dict[str, str]], dict[str, str]]) -> DatasetRecord:
        props = self._store.aspects(urn, ["datasetProperties"], dataset=urn).get("datasetProperties")
        if not isinstance(props, DatasetPropertiesClass) or c.TARGET not in (props.customProperties or {}):
            raise CatalogError(self._unknown(urn))
        props.customProperties = dict(sorted(update(dict(props.customProperties)).items()))
        self._store.emit([MCPW(entityUrn=urn, aspect=props)], dataset=props.name or urn)
        return self.get(urn)

    # ---- models ----------------------------------------------------------------------------
    def publish_model(
        self,
        group_name: str,
        version: str | int,
        metrics: Mapping[str, float],
        hyper_params: Mapping[str, Scalar],
        aliases: Sequence[str] = (),
        trained_on_urns: Sequence[str] = (),
        description: str | None = None,
        location: str | None = None,
    ) -> str:
        """Publish hypernetwork version `version` of `group_name`; returns the MLModel URN.

        An alias (e.g. `champion`) moves: it is taken off any other version of the group.
        """
        group = check_name("model group", group_name, "use the registered model name, e.g. 'hypernet-fleet'")
        version = check_name("model version", str(version), "use the registry's version, e.g. '3'")
        for alias in aliases:
            check_name("model alias", alias, "e.g. 'champion'")
        self._require_datasets(trained_on_urns, f"model {group} v{version}")
        urn = md.model_urn(group, version)
        mcps = md.model_version_mcps(
            group,
            version,
            metrics=self._numbers(metrics, f"model {group} v{version}"),
            hyper_params={k: c.encode_scalar(c.to_scalar("hyper-parameter", k, v, group)) for k, v in hyper_params.items()},
            aliases=list(aliases),
            trained_on=list(trained_on_urns),
            description=description,
            location=location,
            now_ms=_ms(c.utcnow()),
        )
        mcps += self._alias_moves(group, urn, set(aliases))  # after the new version: never alias-less
        self._store.emit(mcps, dataset=f"model {group} v{version}")
        return urn

    def publish_generated_weights(
        self,
        dataset_urn: str,
        model_version: str | int,
        location: str,
        metrics: Mapping[str, float],
        *,
        group_name: str,
    ) -> str:
        """Publish the weights `group_name` v`model_version` generated for one dataset; returns its URN.

        This does not mark the dataset onboarded: call `set_onboarding` once the weights are stored.
        """
        group = check_name("model group", group_name, "use the registered model name")
        version = check_name("model version", str(model_version), "use the registry's version, e.g. '3'")
        record = self.get(dataset_urn)
        weights = parse_location(location)
        check_inside_lake(weights, self.lake, f"weights of {record.name}")
        urn, mcps = md.weights_mcps(
            group,
            version,
            dataset_urn=dataset_urn,
            dataset_name=record.name,
            location=weights.uri,
            metrics=self._numbers(metrics, f"weights of {record.name}"),
            now_ms=_ms(c.utcnow()),
        )
        self._store.emit(mcps, dataset=record.name)
        return urn

    def read_lineage(self, model_urn: str) -> ModelRecord:
        """The model's properties and the datasets its training jobs read."""
        aspects = self._store.aspects(model_urn, md.MODEL_ASPECTS)
        if "mlModelProperties" not in aspects:
            raise CatalogError(f"model {model_urn} is not in the catalog ({self.where}); publish it first")
        jobs = getattr(aspects["mlModelProperties"], "trainingJobs", None) or []
        inputs = {}
        for job in jobs:
            io = self._store.aspects(job, ["dataJobInputOutput"]).get("dataJobInputOutput")
            inputs[job] = list(getattr(io, "inputDatasets", None) or [])
        return md.model_record(model_urn, aspects, inputs)

    def list_models(self, group_name: str, generated_weights: bool = False) -> list[ModelRecord]:
        """The versions published for `group_name` (or, with `generated_weights`, its per-dataset weights)."""
        group = check_name("model group", group_name, "use the registered model name")
        group_urn = (
            md.group_urn(md.weights_group(group), md.WEIGHTS_PLATFORM) if generated_weights else md.group_urn(group)
        )
        models = [self.read_lineage(u) for u in self._store.incoming(group_urn, "MemberOf")]
        return sorted(models, key=lambda m: ((m.version or "").zfill(10), m.name))

    def _alias_moves(self, group: str, keep_urn: str, aliases: set[str]) -> list[MCPW]:
        """versionProperties of other versions, minus the aliases now given to `keep_urn`."""
        if not aliases:
            return []
        moves = []
        for other in self._store.incoming(md.group_urn(group), "MemberOf"):
            vp = self._store.aspects(other, ["versionProperties"]).get("versionProperties")
            if other == keep_urn or vp is None:
                continue
            held = [a.versionTag for a in vp.aliases or []]  # type: ignore[attr-defined]
            if aliases & set(held):
                remaining = [a for a in held if a and a not in aliases]
                moves.append(MCPW(entityUrn=other, aspect=md.version_aspect(group, vp.version.versionTag, remaining)))  # type: ignore[attr-defined]
        return moves

    def _require_datasets(self, urns: Sequence[str], subject: str) -> None:
        for urn in urns:
            if "datasetProperties" not in self._store.aspects(urn, ["datasetProperties"]):
                raise CatalogError(f"{subject}: trained on {urn}, which is not registered ({self.where}); register it first")

    @staticmethod
    def _numbers(values: Mapping[str, float], subject: str) -> dict[str, float]:
        out = {}
        for key, value in values.items():
            number = c.to_scalar("metric", key, value, subject)
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise CatalogError(f"{subject}: metric {key!r} must be a number, got {value!r}")
            out[key] = number
        return out
