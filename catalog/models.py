"""Published models as DataHub aspects: the hypernetwork's versions and per-dataset generated weights.

Names follow DataHub's own MLflow connector, so what we publish coincides with what that connector
would ingest from the MLflow registry:
  group    urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,<group>,PROD)
  version  urn:li:mlModel:(urn:li:dataPlatform:mlflow,<group>_<version>,PROD), with versionProperties
           (version tag, aliases such as `champion`) in one version set per group.
Lineage: model --trainingJobs--> DataJob `train-<version>` of DataFlow `<group>-training`
--inputDatasets--> the fleet datasets it was trained on. Generated weights are an MLModel per
dataset in group `<group>-weights` (platform `hypernet`), whose job `weights-...` reads that dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from datahub.emitter.mce_builder import datahub_guid
from datahub.emitter.mcp import MetadataChangeProposalWrapper as MCPW
from datahub.metadata.schema_classes import (
    DataFlowInfoClass,
    DataJobInfoClass,
    DataJobInputOutputClass,
    MLHyperParamClass,
    MLMetricClass,
    MLModelGroupPropertiesClass,
    MLModelPropertiesClass,
    TimeStampClass,
    VersionPropertiesClass,
    VersionTagClass,
)
from datahub.metadata.urns import DataFlowUrn, DataJobUrn, MlModelGroupUrn, MlModelUrn, VersionSetUrn

from catalog.locations import ENV
from catalog.records import ModelRecord

MODEL_PLATFORM = "mlflow"
WEIGHTS_PLATFORM = "hypernet"
ORCHESTRATOR = "prefect"
LOCATION = "location"
MODEL_ASPECTS = ["mlModelProperties", "versionProperties"]


def group_urn(group: str, platform: str = MODEL_PLATFORM) -> str:
    return str(MlModelGroupUrn(platform, group, ENV))


def model_urn(group: str, version: str) -> str:
    return str(MlModelUrn(MODEL_PLATFORM, f"{group}_{version}", ENV))


def weights_group(group: str) -> str:
    return f"{group}-weights"


def _weights_id(dataset_name: str, dataset_urn: str) -> str:
    """`<name>.<hash>`: readable, and the hash keeps two datasets with one file name apart."""
    return f"{dataset_name}.{hashlib.sha1(dataset_urn.encode()).hexdigest()[:8]}"


def weights_model_urn(group: str, dataset_name: str, dataset_urn: str) -> str:
    """One weights model per dataset, replaced when a newer hypernetwork regenerates them."""
    return str(MlModelUrn(WEIGHTS_PLATFORM, f"{weights_group(group)}.{_weights_id(dataset_name, dataset_urn)}", ENV))


def _version_set(group: str) -> str:
    return str(VersionSetUrn(datahub_guid({"platform": MODEL_PLATFORM, "name": group}), "mlModel"))


def _job_mcps(flow_name: str, job_name: str, inputs: Sequence[str], description: str) -> tuple[str, list[MCPW]]:
    flow = DataFlowUrn(ORCHESTRATOR, flow_name, ENV)
    job = str(DataJobUrn(flow, job_name))
    return job, [
        MCPW(entityUrn=str(flow), aspect=DataFlowInfoClass(name=flow_name)),
        MCPW(
            entityUrn=job,
            aspect=DataJobInfoClass(name=job_name, type="COMMAND", flowUrn=str(flow), description=description),
        ),
        MCPW(entityUrn=job, aspect=DataJobInputOutputClass(inputDatasets=sorted(inputs), outputDatasets=[])),
    ]


def version_aspect(group: str, version: str, aliases: Sequence[str]) -> VersionPropertiesClass:
    return VersionPropertiesClass(
        versionSet=_version_set(group),
        version=VersionTagClass(versionTag=version),
        sortId=version.zfill(10),
        aliases=[VersionTagClass(versionTag=a) for a in aliases],
    )


def model_version_mcps(
    group: str,
    version: str,
    *,
    metrics: Mapping[str, float],
    hyper_params: Mapping[str, object],
    aliases: Sequence[str],
    trained_on: Sequence[str],
    description: str | None,
    location: str | None,
    now_ms: int,
) -> list[MCPW]:
    job, mcps = _job_mcps(
        f"{group}-training", f"train-{version}", trained_on, f"Training of {group} version {version}."
    )
    urn = model_urn(group, version)
    props = MLModelPropertiesClass(
        name=f"{group} v{version}",
        description=description,
        customProperties={LOCATION: location} if location else {},
        created=TimeStampClass(time=now_ms),
        trainingMetrics=[MLMetricClass(name=k, value=str(v)) for k, v in metrics.items()],
        hyperParams=[MLHyperParamClass(name=k, value=str(v)) for k, v in hyper_params.items()],
        groups=[group_urn(group)],
        trainingJobs=[job],
    )
    return [
        MCPW(entityUrn=group_urn(group), aspect=MLModelGroupPropertiesClass(name=group, description=f"Hypernetwork {group}.")),
        *mcps,
        MCPW(entityUrn=urn, aspect=props),
        MCPW(entityUrn=urn, aspect=version_aspect(group, version, aliases)),
    ]


def weights_mcps(
    group: str,
    model_version: str,
    *,
    dataset_urn: str,
    dataset_name: str,
    location: str,
    metrics: Mapping[str, float],
    now_ms: int,
) -> tuple[str, list[MCPW]]:
    urn = weights_model_urn(group, dataset_name, dataset_urn)
    job, mcps = _job_mcps(
        f"{group}-weights", f"weights-{_weights_id(dataset_name, dataset_urn)}", [dataset_urn],
        f"Weights for {dataset_name} generated by {group}.",
    )
    props = MLModelPropertiesClass(
        name=f"{dataset_name} weights",
        description=f"Weights for dataset {dataset_name} generated by {group} version {model_version}.",
        customProperties={LOCATION: location, "generated_by": model_urn(group, model_version), "dataset": dataset_urn},
        created=TimeStampClass(time=now_ms),
        version=VersionTagClass(versionTag=model_version),
        trainingMetrics=[MLMetricClass(name=k, value=str(v)) for k, v in metrics.items()],
        groups=[group_urn(weights_group(group), WEIGHTS_PLATFORM)],
        trainingJobs=[job],
    )
    group_mcp = MCPW(
        entityUrn=group_urn(weights_group(group), WEIGHTS_PLATFORM),
        aspect=MLModelGroupPropertiesClass(
            name=weights_group(group), description=f"Per-dataset weights generated by {group}."
        ),
    )
    return urn, [group_mcp, *mcps, MCPW(entityUrn=urn, aspect=props)]


def _metric(value: str | None) -> float | str:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return value or ""


def model_record(urn: str, aspects: Mapping[str, object], inputs_by_job: Mapping[str, Sequence[str]]) -> ModelRecord:
    props = aspects.get("mlModelProperties")
    assert isinstance(props, MLModelPropertiesClass)
    version_props = aspects.get("versionProperties")
    version = props.version.versionTag if props.version else None
    aliases: tuple[str, ...] = ()
    if isinstance(version_props, VersionPropertiesClass):
        version = version_props.version.versionTag
        aliases = tuple(a.versionTag for a in version_props.aliases or [] if a.versionTag)
    jobs = tuple(props.trainingJobs or [])
    custom = dict(props.customProperties or {})
    return ModelRecord(
        urn=urn,
        name=props.name or urn,
        group_urn=(props.groups or [None])[0],
        version=version,
        aliases=aliases,
        metrics={m.name: _metric(m.value) for m in props.trainingMetrics or []},
        hyper_params={p.name: str(p.value) for p in props.hyperParams or []},
        training_jobs=jobs,
        trained_on=tuple(sorted({d for j in jobs for d in inputs_by_job.get(j, [])})),
        location=custom.get(LOCATION),
        properties=custom,
    )
