"""The main job on embedded defaults: the whole pipeline on the High School and Beyond fleet.

Story: import 140 of the 160 schools into the lake and the catalog (DataHub Lite) -> retraining flow
(validate, train the hypernetwork and the baselines, evaluate, log to MLflow, register, promote)
-> register the 20 held-back schools in the catalog -> onboarding flow (weights for each from the
champion: zero-shot, and few-shot from 20 labelled rows) -> print what happened.
Both flows run on Prefect's temporary local server; tracking and registry are MLflow on SQLite.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from flows import hsb
from flows.fleet_io import import_frame
from flows.report import print_few_shot, print_report, write_report
from flows.settings import Settings

PREFIX = "hsb"
HELD_BACK = 20


def split_schools(df, held_back: int, seed: int):
    schools = np.sort(df[hsb.GROUP].unique())
    later = set(np.random.default_rng(seed).choice(schools, size=held_back, replace=False))
    is_later = df[hsb.GROUP].isin(later)
    return df[~is_later], df[is_later]


def start_embedded_prefect(settings: Settings) -> threading.Thread:
    """Prefect's temporary server, its state under the workspace, started in a thread: it takes
    ~25 s here, time the catalog import runs beside it. Join the thread before running a flow."""
    os.environ.setdefault("PREFECT_HOME", str((settings.workspace / "prefect").resolve()))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # its SQLite file goes there
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    def start() -> None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:  # starts the temporary server when none is configured
            client.api_healthcheck()

    thread = threading.Thread(target=start, name="prefect-server", daemon=True)
    thread.start()
    return thread


def run_demo(settings: Settings, console: Console | None = None, held_back: int = HELD_BACK) -> dict:
    prefect_ready = start_embedded_prefect(settings)
    from flows.events import dataset_registered
    from flows.onboard import onboard
    from flows.train import retrain

    console = console or Console()
    start = time.perf_counter()
    fleet, later = split_schools(hsb.load_hsb(), held_back, settings.seed)
    records = import_frame(settings, fleet, hsb.GROUP, hsb.TARGET, hsb.SCHOOL_META, prefix=PREFIX)
    console.print(f"Catalog: {len(records)} schools imported into DataHub Lite ({settings.catalog_file}), "
                  f"{len(later[hsb.GROUP].unique())} held back for onboarding.")
    prefect_ready.join()

    trained = retrain()
    for name, reason in trained["quarantined"].items():
        console.print(f"[yellow]quarantined[/] {name}: {reason}")
    console.print(f"Retraining: version {trained['version']} -> @{trained['alias']} ({'; '.join(trained['reasons'])})")

    new = import_frame(settings, later, hsb.GROUP, hsb.TARGET, hsb.SCHOOL_META, prefix=PREFIX)
    dataset_registered(new)
    onboarded = onboard()

    report = trained["report"] | {"fleet": "hsb", "onboarding": onboarded["summary"], "version": trained["version"],
                                  "alias": trained["alias"], "quarantined": trained["quarantined"]}
    report["seconds"] = time.perf_counter() - start
    path = write_report(report, settings.reports_dir, "demo")
    print_report(report, f"High School and Beyond, {trained['datasets']} schools: R² on held-out rows (seen) "
                         "and held-out schools (unseen)", console)
    print_few_shot(report["few_shot"], console)
    print_onboarding(onboarded, console, settings.onboard.few_shot_rows)
    console.print(f"Wall time {report['seconds']:.0f} s. Report: {path}")
    console.print(f"Runs, metrics, figures and the registered model: [bold]hypernet ui[/] "
                  f"(MLflow UI on {settings.tracking_uri}).")
    return report | {"onboarded": onboarded}


def print_onboarding(result: dict, console: Console, shots: int) -> None:
    summary = result.get("summary") or {}
    if not summary:
        console.print(f"Onboarding: {len(result['onboarded'])} dataset(s) onboarded (no labelled rows to score).")
        return
    table = Table(title=f"Onboarded with champion v{result['champion']}: {summary['datasets']} new schools, "
                        f"{summary['query_rows']:,} rows not used to adapt", title_justify="left")
    table.add_column("weights")
    table.add_column("R²", justify="right")
    table.add_row("zero-shot (meta-features only)", f"{summary['zero_shot']:.3f}")
    table.add_row(f"few-shot ({shots} labelled rows)", f"{summary['few_shot']:.3f}")
    console.print(table)
