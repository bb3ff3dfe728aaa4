"""The small interface both backends implement; `Catalog` is written against it alone.

Four operations are enough for everything the catalog does, so a feature can't exist in one
backend and not the other: write aspects, read an entity's aspects, list the entities that point
at an entity through a DataHub relationship (`TaggedWith` a tag, `MemberOf` a model group), close.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from datahub.emitter.mcp import MetadataChangeProposalWrapper

RELATIONSHIPS = ("TaggedWith", "MemberOf")


class Store(Protocol):
    where: str  # "DataHub Lite sqlite file /x/y" or "DataHub server http://...": used in error messages

    def emit(self, mcps: Sequence[MetadataChangeProposalWrapper], dataset: str | None = None) -> None:
        """Upsert the aspects, in order. `dataset` only names the subject in error messages."""

    def aspects(self, urn: str, names: Sequence[str], dataset: str | None = None) -> dict[str, object]:
        """The entity's latest typed aspects among `names`; {} when the entity is unknown."""

    def incoming(self, urn: str, relationship: str) -> list[str]:
        """URNs of entities with a `relationship` edge to `urn` (one of RELATIONSHIPS), sorted."""

    def close(self) -> None: ...
