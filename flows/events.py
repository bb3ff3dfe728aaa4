"""Events the pipeline emits to Prefect, so deployments can react (see the triggers in prefect.yaml)."""

from __future__ import annotations

import os
from typing import Sequence

from catalog import DatasetRecord

DATASET_REGISTERED = "catalog.dataset.registered"


def dataset_registered(records: Sequence[DatasetRecord]) -> int:
    """One `catalog.dataset.registered` event per dataset; returns how many were sent.

    Only when a Prefect server is configured (PREFECT_API_URL, e.g. after `hypernet stack up`):
    without one there is nobody to tell, and emitting would start a temporary server for nothing."""
    if not os.environ.get("PREFECT_API_URL") or not records:
        return 0
    from prefect.events import emit_event

    sent = 0
    for r in records:
        event = emit_event(event=DATASET_REGISTERED,
                           resource={"prefect.resource.id": f"hypernet.catalog.dataset.{r.name}",
                                     "prefect.resource.name": r.name, "hypernet.urn": r.urn})
        sent += event is not None
    return sent
