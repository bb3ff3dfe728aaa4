"""What the catalog hands back: plain frozen dataclasses, free of DataHub classes.

Callers (flows, CLI) work with these and never see a DataHub aspect, so the two backends and any
future change of DataHub's Python API stay behind `catalog/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Union

Scalar = Union[str, int, float, bool]
TaskType = Literal["regression", "classification"]
TASK_TYPES: tuple[str, ...] = ("regression", "classification")


@dataclass(frozen=True)
class Field:
    """One column of a dataset: its name and the type its source calls it (e.g. pandas `int64`)."""

    name: str
    native_type: str
    nullable: bool = True


@dataclass(frozen=True)
class Validation:
    """The last validation verdict written back by a flow."""

    ok: bool
    reason: str
    at: datetime


@dataclass(frozen=True)
class Onboarding:
    """Which hypernetwork version generated this dataset's weights, and when."""

    model_version: str
    at: datetime


@dataclass(frozen=True)
class DatasetRecord:
    """A fleet dataset as the catalog knows it.

    `meta` and `stats` come back typed (int, float, bool or str) although DataHub stores strings.
    `field_mapping` maps every feature column (all fields but the target) to its canonical feature:
    the glossary term on the field when there is one, else the column's own name.
    """

    urn: str
    name: str
    location: str
    platform: str
    fields: tuple[Field, ...]
    target: str
    task_type: str
    meta: dict[str, Scalar]
    field_mapping: dict[str, str]
    registered_at: datetime
    updated_at: datetime | None = None
    description: str | None = None
    validation: Validation | None = None
    stats: dict[str, Scalar] = field(default_factory=dict)
    onboarding: Onboarding | None = None

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.name != self.target)


@dataclass(frozen=True)
class ModelRecord:
    """A published model version (hypernetwork or per-dataset generated weights) and its lineage.

    `trained_on` lists the dataset URNs the model's training jobs read: the fleet for a
    hypernetwork version, the one dataset for generated weights.
    """

    urn: str
    name: str
    group_urn: str | None
    version: str | None
    aliases: tuple[str, ...]
    metrics: dict[str, float | str]
    hyper_params: dict[str, str]
    training_jobs: tuple[str, ...]
    trained_on: tuple[str, ...]
    location: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
