"""The onboarding flow: new datasets in the catalog -> validate -> weights from the champion -> lake,
MLflow, catalog.

Idempotent: a dataset that already has weights from the current champion is skipped, so a second
run (or a run started while another is going: they take turns) changes nothing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from catalog import DatasetRecord
from flows import onboarding, tracking
from flows.fleet_io import keep_valid
from flows.settings import Settings

step = task(cache_policy=NO_CACHE)


@step
def find_new_datasets(settings: Settings, champion: onboarding.Champion) -> list[DatasetRecord]:
    return onboarding.candidates(settings, champion)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def validate(settings: Settings, records: list[DatasetRecord]) -> list[DatasetRecord]:
    """Great Expectations; a failing dataset is quarantined in the catalog and not onboarded."""
    if not records:
        return []
    valid, result = keep_valid(settings, records)
    for bad in result.quarantined:
        get_run_logger().warning(f"quarantined {bad.name}: {bad.reason}")
    return valid


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def generate_and_store(settings: Settings, champion: onboarding.Champion, record: DatasetRecord,
                       folder) -> onboarding.Onboarded:
    generated, metrics, query = onboarding.generate_for(settings, champion, record)
    location, local = onboarding.store_weights(settings, champion, record, generated, folder)
    return onboarding.Onboarded(record.name, record.urn, generated.spec["how"], metrics, location, local, query)


@step
def log_to_mlflow(settings: Settings, champion: onboarding.Champion, done: list[onboarding.Onboarded]) -> str:
    return tracking.log_onboarding(settings, champion.version, done)


@step
def publish(settings: Settings, champion: onboarding.Champion, done: list[onboarding.Onboarded]) -> None:
    onboarding.publish(settings, champion, done)


@flow(name="onboard", log_prints=True)
def onboard() -> dict:
    """Give every dataset registered in the catalog, and not yet onboarded by the champion, its weights."""
    settings = Settings()
    tracking.configure(settings)
    champion = onboarding.load_champion(settings)
    if champion is None:
        print("No @champion in the registry yet: run the retraining flow first.")
        return {"champion": None, "onboarded": []}
    with onboarding.onboarding_lock(settings):
        ready = validate(settings, find_new_datasets(settings, champion))
        with tempfile.TemporaryDirectory(prefix="hypernet-onboard-") as scratch:  # local copies for MLflow
            done = [generate_and_store(settings, champion, r, Path(scratch)) for r in ready]
            run_id = log_to_mlflow(settings, champion, done) if done else None
        publish(settings, champion, done)  # last: a dataset is marked onboarded only once all is stored
    print(f"champion v{champion.version}: onboarded {len(done)} dataset(s)")
    return {"champion": champion.version, "run_id": run_id,
            "summary": onboarding.summarize(champion.encoder.task, done),
            "onboarded": [{"name": d.name, "how": d.how, "metrics": d.metrics, "location": d.location} for d in done]}
