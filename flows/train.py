"""The retraining flow: catalog -> lake -> Great Expectations -> train -> evaluate -> MLflow -> gate -> catalog.

Each task is one call into a library function; the flow is the pipeline's story. The new version
is registered in any case; it becomes `@champion` only if it passes the promotion gate (flows/promotion.py),
otherwise `@challenger`, and the alias is set last, after every artifact is stored.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from catalog import DatasetRecord, open_catalog_from_settings
from flows import evaluation, tracking
from flows.figures import fleet_figures
from flows.onboarding import load_champion
from flows.fleet_io import keep_valid, list_fleet, table_from_record
from flows.promotion import Decision, backward_transfer, decide
from flows.settings import Settings
from flows.storage import Lake
from hypernet_core import DatasetTable
from hypernet_core.io import save_model

# Models and tables are passed between tasks in memory; nothing here is worth caching by input.
step = task(cache_policy=NO_CACHE)


@dataclass
class Validated:
    records: list[DatasetRecord]  # the datasets that may be trained on
    results: list[dict]           # every dataset's verdict and reason, quarantined ones included


@dataclass
class LoadedFleet:
    tables: list[DatasetTable]
    datasets: list[dict]  # name, urn, location, content hash: what this version was trained on
    task: str             # regression | classification, from the catalog's learning contract


@dataclass
class ChampionScores:
    version: int
    overall: float
    per_dataset: dict[str, float]


@step
def discover_fleet(settings: Settings) -> list[DatasetRecord]:
    return list_fleet(settings)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def validate_fleet(settings: Settings, records: list[DatasetRecord]) -> Validated:
    """Great Expectations on every dataset; verdicts go back to the catalog, failures are quarantined."""
    valid, result = keep_valid(settings, records, results_dir=settings.reports_dir / "validation")
    for bad in result.quarantined:
        get_run_logger().warning(f"quarantined {bad.name}: {bad.reason}")
    result.require_valid()
    return Validated(valid, [r.to_dict() for r in result.results])


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def load_datasets(settings: Settings, records: list[DatasetRecord]) -> LoadedFleet:
    lake = Lake.from_settings(settings)
    tables, datasets = [], []
    for record in records:
        df = lake.read_table(record.location)
        tables.append(table_from_record(record, df, tuple(settings.validation.stats_as_meta)))
        datasets.append({"name": record.name, "urn": record.urn, "location": record.location,
                         "content_hash": tracking.content_hash(df)})
    return LoadedFleet(tables, datasets, _one_task(records))


@step
def train_models(settings: Settings, fleet: LoadedFleet, max_steps: int | None) -> evaluation.FleetEvaluation:
    return evaluation.train_and_evaluate(settings, fleet.tables, task=fleet.task, max_steps=max_steps)


@step
def evaluate_champion(settings: Settings, result: evaluation.FleetEvaluation) -> ChampionScores | None:
    """The current champion on the same held-out rows as the new version."""
    champion = load_champion(settings)
    if champion is None:
        return None
    overall, per_dataset = evaluation.score_model(champion.model, champion.encoder, result.test)
    return ChampionScores(champion.version, overall, per_dataset)


@step
def draw_figures(settings: Settings, result: evaluation.FleetEvaluation, out_dir: Path) -> dict:
    pooled = result.report["models"].get("pooled", {}).get("per_dataset_seen")
    return fleet_figures(out_dir, result.model, result.train_fleet, result.per_dataset(), pooled)


@step
def gate(settings: Settings, result: evaluation.FleetEvaluation, champion: ChampionScores | None) -> Decision:
    pooled = result.report["models"].get("pooled", {}).get("seen", float("-inf"))
    return decide(result.seen(), result.per_dataset(), pooled,
                  champion.overall if champion else None, champion.per_dataset if champion else None,
                  settings.retrain.max_dataset_regression)


@step
def log_and_register(settings: Settings, validated: Validated, fleet: LoadedFleet, result: evaluation.FleetEvaluation,
                     champion: ChampionScores | None, moves: dict, figures: dict, decision: Decision) -> dict:
    """One MLflow run with everything a reviewer needs, the model logged and registered (no alias yet)."""
    import mlflow

    with mlflow.start_run(run_name="retrain") as run, tempfile.TemporaryDirectory() as tmp:
        tracking.log_settings(settings)
        tracking.log_datasets(fleet.datasets)
        tracking.log_validation(validated.results)
        tracking.log_comparison(result.report | {"champion": champion.__dict__ if champion else None,
                                                 "decision": decision.__dict__, "transfer": moves})
        tracking.log_per_dataset_metrics({k: m["per_dataset_seen"] for k, m in result.report["models"].items()})
        tracking.log_figures([Path(figures[k]) for k in ("heatmap", "gains", "matrix") if k in figures])
        model_dir = save_model(Path(tmp) / "model", result.model, result.encoder, result.model_config,
                               extra={"dataset_meta": {t.name: t.meta for t in fleet.tables},
                                      "trained_on": fleet.datasets, "metrics": {"seen": result.seen()}})
        info = tracking.log_fleet_model(model_dir, registered_model_name=None)
        version = tracking.register_version(info.model_uri, settings.tracking.model_name, run.info.run_id,
                                            tags={"gate": decision.alias, "reasons": "; ".join(decision.reasons)})
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "version": version}


@step
def publish(settings: Settings, fleet: LoadedFleet, result: evaluation.FleetEvaluation, logged: dict,
            decision: Decision) -> str:
    """The version in DataHub: metrics, hyper-parameters, alias, lineage to its training datasets."""
    report = result.report
    metrics = {f"{kind}.{split}": m[split] for kind, m in report["models"].items()
               for split in ("seen", "unseen") if m.get(split) is not None}
    with open_catalog_from_settings(settings) as cat:
        return cat.publish_model(settings.tracking.model_name, logged["version"], metrics,
                                 hyper_params=_flat(report["model_config"]) | {"max_steps": report["train_config"]["max_steps"]},
                                 aliases=[decision.alias], trained_on_urns=[d["urn"] for d in fleet.datasets],
                                 description="; ".join(decision.reasons), location=logged["model_uri"])


@step
def set_alias(settings: Settings, logged: dict, decision: Decision) -> None:
    tracking.set_alias(settings.tracking.model_name, decision.alias, logged["version"])


@flow(name="retrain", log_prints=True)
def retrain(max_steps: int | None = None) -> dict:
    """Retrain the hypernetwork on the catalog's fleet; promote it only if it beats the champion.

    `max_steps` overrides the training budget of this run (every model alike)."""
    settings = Settings()
    tracking.configure(settings)  # before anything asks the registry for the champion
    validated = validate_fleet(settings, discover_fleet(settings))
    fleet = load_datasets(settings, validated.records)
    result = train_models(settings, fleet, max_steps)
    champion = evaluate_champion(settings, result)
    figures = draw_figures(settings, result, settings.reports_dir / "retrain")
    decision = gate(settings, result, champion)
    moves = transfer(result, champion)
    logged = log_and_register(settings, validated, fleet, result, champion, moves, figures, decision)
    publish(settings, fleet, result, logged, decision)
    set_alias(settings, logged, decision)  # last: the alias never points at a half-stored version
    print(f"version {logged['version']} -> @{decision.alias}: " + "; ".join(decision.reasons))
    return {"version": logged["version"], "alias": decision.alias, "reasons": decision.reasons,
            "run_id": logged["run_id"], "report": result.report,
            "champion": champion.__dict__ if champion else None, "datasets": len(fleet.tables),
            "transfer": moves,
            "quarantined": {r["name"]: r["reason"] for r in validated.results if not r["ok"]}}


def transfer(result: evaluation.FleetEvaluation, champion: ChampionScores | None) -> dict:
    """Backward: the new version minus the champion on the datasets both know (held-out rows);
    forward: the new version on datasets it never saw (zero-shot, k-fold)."""
    return {"backward_vs_champion": backward_transfer(result.per_dataset(), champion.per_dataset) if champion else None,
            "forward_zero_shot": result.report["models"]["hypernetwork"].get("unseen")}


def _one_task(records: list[DatasetRecord]) -> str:
    tasks = {r.task_type for r in records}
    if len(tasks) != 1:
        raise ValueError(f"the fleet mixes task types {sorted(tasks)}; one hypernetwork learns one task: "
                         "give each task its own fleet tag (HYPERNET_CATALOG__FLEET_TAG)")
    return tasks.pop()


def _flat(d: dict) -> dict:
    return {k: (str(v) if isinstance(v, (list, tuple, dict)) else v) for k, v in d.items() if v is not None}

