"""Production backend: a DataHub server (GMS) through DataHub's official REST client.

`DataHubGraph` is DataHub's own client (a `DatahubRestEmitter` plus reads). The endpoints this
backend uses, and nothing else:
  GET  /config                                   connection check when the catalog opens
  POST /aspects?action=ingestProposalBatch       writes (Rest.li ingestion, synchronous)
  GET  /entitiesV2/{urn}?aspects=List(...)        reads of an entity's aspects
  GET  /openapi/relationships/v1/?urn=..&direction=INCOMING&relationshipTypes=..
                                                 who is TaggedWith the fleet tag / MemberOf a group
Plainly: the tests exercise this backend against a small local HTTP stand-in of exactly these
endpoints (tests/catalog/gms_standin.py) that records what is sent; no real GMS runs on the
machines this project is developed on. On a real server, the relationship index is updated
asynchronously, so a dataset registered a moment ago can take a few seconds to appear in the fleet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import requests
from datahub.configuration.common import ConfigurationError, OperationalError
from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.emitter.emit_mode import EmitMode
from datahub.ingestion.graph.client import DataHubGraph
from datahub.ingestion.graph.config import DatahubClientConfig
from datahub.ingestion.graph.openapi import RelationshipDirection

from catalog.errors import CatalogError

log = logging.getLogger(__name__)
_FAILURES = (ConfigurationError, OperationalError, requests.RequestException)


class ServerStore:
    def __init__(self, server_url: str, token: str | None = None, timeout_s: float = 10.0, retries: int = 2) -> None:
        self.url = server_url.rstrip("/")
        self.where = f"DataHub server {self.url}"
        config = DatahubClientConfig(
            server=self.url,
            token=token,
            timeout_sec=timeout_s,
            retry_max_times=retries,
            openapi_ingestion=False,
        )
        self._graph = DataHubGraph(config)
        try:
            self._graph.test_connection()
        except _FAILURES as exc:
            self._graph.close()
            raise CatalogError(self._unreachable(None, exc)) from exc

    def _unreachable(self, dataset: str | None, exc: Exception) -> str:
        subject = f"dataset {dataset!r}: " if dataset else ""
        return (
            f"{subject}the DataHub server at {self.url} could not be used ({_short(exc)}). "
            "Check that GMS is running and reachable, that HYPERNET_CATALOG__SERVER_URL points at GMS "
            "(usually port 8080, not the 9002 frontend) and that HYPERNET_CATALOG__TOKEN is a valid "
            "access token; or use the embedded catalog with HYPERNET_CATALOG__BACKEND=lite"
        )

    def emit(self, mcps: Sequence[MetadataChangeProposalWrapper], dataset: str | None = None) -> None:
        try:
            self._graph.emit_mcps(list(mcps), emit_mode=EmitMode.SYNC_WAIT)
        except _FAILURES as exc:
            raise CatalogError(self._unreachable(dataset, exc)) from exc

    def aspects(self, urn: str, names: Sequence[str], dataset: str | None = None) -> dict[str, object]:
        try:
            found = self._graph.get_entity_semityped(urn, aspects=list(names))
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return {}
            raise CatalogError(self._unreachable(dataset, exc)) from exc
        except _FAILURES as exc:
            raise CatalogError(self._unreachable(dataset, exc)) from exc
        return {k: v for k, v in found.items() if k in names}

    def incoming(self, urn: str, relationship: str) -> list[str]:
        try:
            related = self._graph.get_related_entities(urn, [relationship], RelationshipDirection.INCOMING)
            return sorted({r.urn for r in related})
        except _FAILURES as exc:
            raise CatalogError(self._unreachable(None, exc)) from exc

    def close(self) -> None:
        self._graph.close()


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
