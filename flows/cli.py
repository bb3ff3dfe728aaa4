"""The `hypernet` command line (Typer + Rich)."""

from __future__ import annotations

import importlib
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from flows.settings import Settings

app = typer.Typer(
    name="hypernet",
    help="One hypernetwork for a fleet of datasets: train, evaluate, catalog, validate.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console()


def _mount(module: str, name: str, help_text: str) -> None:
    """Mount a sub-command group that lives in its own module (kept apart so each stays small)."""
    try:
        sub = importlib.import_module(module).app
    except ModuleNotFoundError as exc:  # a sub-app not written yet must not break the others
        if exc.name != module:
            raise
        return
    app.add_typer(sub, name=name, help=help_text)


_mount("flows.cli_catalog", "catalog", "Register, import, list and show fleet datasets in DataHub.")
_mount("flows.cli_validate", "validate", "Validate fleet datasets with Great Expectations.")
_mount("flows.cli_stack", "stack", "Start, stop and check the local stack: Prefect, MLflow, S3, a worker.")


@app.callback()
def _use_running_stack() -> None:
    """After `hypernet stack up`, every command talks to the stack's services (Prefect, MLflow, S3
    lake); variables the user set explicitly still win."""
    from infra.stack import stack_env

    for key, value in (stack_env(Settings().workspace) or {}).items():
        os.environ.setdefault(key, value)


from flows.cli_stack import ui  # noqa: E402  (hypernet ui: the MLflow UI on the workspace's tracking store)

app.command()(ui)


@app.command()
def demo(held_back: int = typer.Option(20, help="Schools kept out of training and onboarded afterwards.")) -> None:
    """The main job: the High School and Beyond fleet through the retraining and onboarding flows."""
    from flows.demo import run_demo

    run_demo(Settings(), console, held_back=held_back)


@app.command()
def protocol(
    folds: int = typer.Option(5, help="Folds of whole schools for the unseen-school evaluation."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    members: int = typer.Option(3, help="Seeds per model (every model alike); predictions are averaged."),
    workers: Optional[int] = typer.Option(None, help="Training processes (default: one per CPU core)."),
) -> None:
    """The full evaluation protocol on all 160 HSB schools, with classical references on the same splits."""
    from flows.hsb_protocol import run_hsb_protocol

    run_hsb_protocol(Settings(), console, folds=folds, progress=progress, workers=workers, members=members)


@app.command()
def retrain(max_steps: Optional[int] = typer.Option(None, help="Training budget of this run (default: settings).")) -> None:
    """Run the retraining flow once, here (a deployment runs the same flow on a worker)."""
    from flows.train import retrain as retrain_flow

    result = retrain_flow(max_steps=max_steps)
    console.print(f"version {result['version']} -> @{result['alias']}")


@app.command()
def onboard() -> None:
    """Run the onboarding flow once, here."""
    from flows.onboard import onboard as onboard_flow

    result = onboard_flow()
    console.print(f"onboarded {len(result['onboarded'])} dataset(s)")


@app.command()
def deploy() -> None:
    """Register the deployments of prefect.yaml with the Prefect server (started by `hypernet stack up`)."""
    from flows.deploy import deploy_all

    for line in deploy_all(Settings()):
        console.print(line)


@app.command()
def train(
    table: Path = typer.Argument(..., exists=True, dir_okay=False, help="One long table (CSV or parquet)."),
    group: str = typer.Option(..., help="Column naming the dataset (source) of each row."),
    target: str = typer.Option(..., help="Target column."),
    features: Optional[list[str]] = typer.Option(None, "--feature", "-f", help="Feature columns (default: the rest)."),
    meta: Optional[list[str]] = typer.Option(None, "--meta", "-m", help="Meta-feature columns (constant per source)."),
    task: str = typer.Option("regression", help="regression or classification."),
    baselines: bool = typer.Option(True, help="Also train the baselines on the same split for comparison."),
    steps: int = typer.Option(600, help="Maximum optimiser steps per model."),
    name: str = typer.Option("model", help="Folder name under <workspace>/models."),
    checkpoint_dir: Optional[Path] = typer.Option(
        None, "--checkpoint-dir", help="Checkpoint every epoch here; running the same command again resumes."),
    checkpoint_every: int = typer.Option(1, help="Epochs between checkpoints."),
) -> None:
    """Train the hypernetwork on your own table, compare it with the baselines, and save it.

    Distributed: `torchrun --standalone --nproc_per_node=N $(which hypernet) train ...` (gloo on CPU,
    nccl on GPU); only rank 0 prints and writes."""
    from flows.training import train_table

    train_table(Settings(), console, table, group, target, features or [], meta or [], task, baselines, steps, name,
                checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)


@app.command()
def generate(
    model_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A saved model (hypernet train)."),
    name: str = typer.Option(..., help="The new dataset's name."),
    meta: Optional[list[str]] = typer.Option(None, "--meta", "-m", help="KEY=VALUE meta-feature (repeatable)."),
    rows: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="Labelled rows (CSV/parquet): few-shot."),
    target: Optional[str] = typer.Option(None, help="Target column of --rows."),
    out: Optional[Path] = typer.Option(None, help="Output file (default <workspace>/weights/<name>.safetensors)."),
) -> None:
    """Weights for a dataset the model has never seen: zero-shot from meta-features, few-shot with rows."""
    from flows.generation import generate_weights

    settings = Settings()
    path = generate_weights(settings, model_dir, name, meta or [], rows, target, out)
    console.print(f"Weights for {name!r} written to {path}")


@app.command()
def transfer(
    table: Path = typer.Argument(..., exists=True, dir_okay=False, help="One long table (CSV or parquet)."),
    group: str = typer.Option(..., help="Column naming the dataset of each row."),
    target: str = typer.Option(..., help="Target column."),
    meta: Optional[list[str]] = typer.Option(None, "--meta", "-m", help="Meta-feature columns."),
    task: str = typer.Option("regression", help="regression or classification."),
    stages: int = typer.Option(4, help="Disjoint groups of datasets, trained one after another."),
    steps: int = typer.Option(200, help="Optimiser steps per stage."),
    kind: str = typer.Option("hypernetwork", help="Model: hypernetwork, pooled, task_conditioned, per_dataset."),
) -> None:
    """GEM transfer: train stage by stage, print R[i, j] and ACC, BWT, FWT."""
    from flows.transfer_job import sequential_transfer

    sequential_transfer(Settings(), console, table, group, target, meta or [], task, stages, steps, kind)


@app.command()
def compare(
    new: Path = typer.Argument(..., exists=True, file_okay=False, help="The new model version (folder)."),
    old: Path = typer.Argument(..., exists=True, file_okay=False, help="The previous version (folder)."),
    table: Path = typer.Argument(..., exists=True, dir_okay=False, help="Labelled rows of the datasets."),
    group: str = typer.Option(..., help="Column naming the dataset of each row."),
    target: str = typer.Option(..., help="Target column."),
    meta: Optional[list[str]] = typer.Option(None, "--meta", "-m", help="Meta-feature columns."),
) -> None:
    """Backward transfer between versions: the new model against the old on the datasets both know."""
    from flows.transfer_job import compare_versions

    compare_versions(Settings(), console, new, old, table, group, target, meta or [])


@app.command()
def doctor() -> None:
    """Versions, device and configured backends."""
    settings = Settings()
    t = Table(title="hypernet doctor", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("python", platform.python_version())
    for pkg in ("hypernet-pipeline", "torch", "prefect", "mlflow", "acryl-datahub", "great-expectations", "pandas",
                "boto3", "safetensors"):
        t.add_row(pkg, _version(pkg))
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    t.add_row("device", f"{settings.resolve_device()} (setting: {settings.device}; GPU: {gpu})")
    t.add_row("workspace", str(settings.workspace.resolve()))
    t.add_row("catalog", f"{settings.catalog.backend} "
              + (f"{settings.catalog.engine} {settings.catalog_file}" if settings.catalog.backend == "lite"
                 else settings.catalog.server_url))
    t.add_row("data lake", settings.lake)
    t.add_row("tracking", settings.tracking_uri)
    console.print(t)


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "[red]not installed[/]"


if __name__ == "__main__":
    app()
