"""`hypernet catalog ...`: import, register, list and show fleet datasets in DataHub.

    hypernet catalog import hsb.parquet --group School --target MathAch --meta Sector,Size,MEANSES
    hypernet catalog register .hypernet/lake/x.parquet --target y --meta region=siberia --meta altitude_m=512
    hypernet catalog list
    hypernet catalog show hsb-1224

Data goes to the lake through `flows.storage.Lake`; everything about DataHub goes through `catalog`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from catalog import CatalogError, DatasetRecord, fields_from_dtypes, open_catalog_from_settings
from catalog.contract import decode_scalar
from catalog.locations import check_inside_lake, parse_location
from flows.fleet_io import import_frame, slug
from flows.settings import Settings
from flows.storage import Lake

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(no_args_is_help=True, help="Register, import, list and show fleet datasets in DataHub.")
console = Console()


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input ends the command with its message and exit code 1, not a traceback."""
    try:
        yield
    except (CatalogError, FileExistsError, FileNotFoundError, PermissionError, ConnectionError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc


def _pairs(values: list[str], what: str) -> dict[str, str]:
    """`["a=1", "b=x"]` -> {"a": "1", "b": "x"}; refuses items without '='."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CatalogError(f"{what} {item!r} is not KEY=VALUE (e.g. --meta altitude_m=512)")
        out[key.strip()] = value.strip()
    return out


def _columns(values: list[str]) -> list[str]:
    """`--meta a --meta b,c` -> ["a", "b", "c"]."""
    return [c.strip() for v in values for c in v.split(",") if c.strip()]


def _as_uri(path_or_uri: str) -> str:
    """An s3:// URI as is; a path relative to the working directory made absolute."""
    return path_or_uri if path_or_uri.startswith("s3://") else str(Path(path_or_uri).expanduser().resolve())



# ---- import ---------------------------------------------------------------------------------
def _require_columns(df: "pd.DataFrame", table: str, **wanted: list[str]) -> None:
    present = [str(c) for c in df.columns]
    for option, cols in wanted.items():
        for col in cols:
            if col not in present:
                raise CatalogError(f"table {table}: --{option} column {col!r} is not among its columns {present}")


@app.command("import")
def import_table(
    table: str = typer.Argument(..., help="A long table (CSV or parquet; a path or an s3:// URI)."),
    group: str = typer.Option(..., "--group", help="Column naming the source of each row: one dataset per value."),
    target: str = typer.Option(..., "--target", help="Column to predict."),
    meta: list[str] = typer.Option([], "--meta", help="Per-source meta-feature columns (repeat, or comma-separate)."),
    task_type: str = typer.Option("regression", "--task-type", help="regression or classification."),
    mapping: list[str] = typer.Option([], "--map", help="COLUMN=CANONICAL feature (repeatable)."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="Lake folder and name prefix (default: table name)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace lake files that hold different data."),
) -> None:
    """Split TABLE by --group into one dataset per source, write each to the lake and register it."""
    settings = Settings()
    lake = Lake.from_settings(settings)
    with _user_errors():
        df = lake.read_table(_as_uri(table))
        meta_cols, field_mapping = _columns(meta), _pairs(mapping, "--map")
        _require_columns(df, table, group=[group], target=[target], meta=meta_cols, map=list(field_mapping))
        if target == group or target in meta_cols:
            raise CatalogError(f"table {table}: the target {target!r} cannot also be the group or a meta-feature")
        base = slug(prefix or Path(table).stem)
        unassigned = int(df[group].isna().sum())
        if unassigned:
            console.print(f"[yellow]warning:[/] {unassigned} rows have no {escape(group)!r} value and are skipped")
        records = import_frame(settings, df, group, target, meta_cols, base, task_type, field_mapping, overwrite)
        console.print(_fleet_table(records, f"Imported {len(records)} datasets from {table}"))
    _announce(records)


# ---- register -------------------------------------------------------------------------------
@app.command()
def register(
    file: str = typer.Argument(..., help="A table already in the lake (a path, or an s3:// URI)."),
    target: str = typer.Option(..., "--target", help="Column to predict."),
    task_type: str = typer.Option("regression", "--task-type", help="regression or classification."),
    meta: list[str] = typer.Option([], "--meta", help="KEY=VALUE meta-feature (repeatable); numbers stay numbers."),
    mapping: list[str] = typer.Option([], "--map", help="COLUMN=CANONICAL feature (repeatable)."),
    name: Optional[str] = typer.Option(None, "--name", help="Display name (default: the file name)."),
    description: Optional[str] = typer.Option(None, "--description"),
) -> None:
    """Register (or update) one dataset that is already in the lake."""
    settings = Settings()
    lake = Lake.from_settings(settings)
    with _user_errors():
        loc = parse_location(_as_uri(file))
        check_inside_lake(loc, settings.lake, name or loc.stem)  # before reading it
        data = lake.read_table(loc.uri)
        meta_values = {k: decode_scalar(v) for k, v in _pairs(meta, "--meta").items()}
        with open_catalog_from_settings(settings) as cat:
            record = cat.register_dataset(
                loc.uri, fields_from_dtypes(data.dtypes.items()), target, task_type, meta_values,
                field_mapping=_pairs(mapping, "--map"), description=description, name=name,
            )
            console.print(_fleet_table([record], "Registered"))
    _announce([record])


def _announce(records: list[DatasetRecord]) -> None:
    """Tell Prefect (when a server is configured), so the onboarding deployment starts at once."""
    from flows.events import dataset_registered

    sent = dataset_registered(records)
    if sent:
        console.print(f"Sent {sent} catalog.dataset.registered event(s) to Prefect.")


# ---- list / show ----------------------------------------------------------------------------
def _status(record: DatasetRecord) -> str:
    if record.validation is None:
        return "[dim]not validated[/]"
    mark = "[green]passed[/]" if record.validation.ok else "[red]failed[/]"
    return f"{mark} {escape(record.validation.reason)}" if not record.validation.ok else mark


def _fleet_table(records: list[DatasetRecord], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("Name", "Task", "Target", "Cols", "Meta-features", "Validation", "Onboarded", "Registered (UTC)"):
        table.add_column(column, overflow="fold")
    for r in records:
        table.add_row(
            escape(r.name),
            r.task_type,
            escape(r.target),
            str(len(r.fields)),
            escape(", ".join(f"{k}={v}" for k, v in sorted(r.meta.items()))),
            _status(r),
            escape(r.onboarding.model_version) if r.onboarding else "[dim]-[/]",
            r.registered_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    return table


@app.command("list")
def list_fleet() -> None:
    """The fleet: every dataset with the fleet tag, and the published hypernetwork versions."""
    settings = Settings()
    with _user_errors(), open_catalog_from_settings(settings) as cat:
        records = cat.list_fleet()
        title = f"Fleet '{cat.fleet_tag}': {len(records)} datasets ({cat.where})"
        console.print(_fleet_table(records, escape(title)))
        if settings.catalog.backend == "lite":
            console.print(
                f"[dim]Browse it with DataHub: datahub lite init --type {settings.catalog.engine} "
                f"--file {escape(str(settings.catalog_file.resolve()))} (needs a `gms:` section in "
                "~/.datahubenv first), then datahub lite ls /[/]"
            )
        models = cat.list_models(settings.tracking.model_name)
        if models:
            table = Table(title=escape(f"Model {settings.tracking.model_name}"), title_justify="left")
            for column in ("Version", "Aliases", "Metrics", "Trained on"):
                table.add_column(column)
            for m in models:
                metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.metrics.items())
                table.add_row(m.version or "?", ", ".join(m.aliases), escape(metrics), f"{len(m.trained_on)} datasets")
            console.print(table)


def _resolve(records: list[DatasetRecord], ref: str) -> str:
    """A URN as is; otherwise a dataset name or location from the fleet."""
    if ref.startswith("urn:li:"):
        return ref
    matches = [r.urn for r in records if ref in (r.name, r.location)]
    if len(matches) != 1:
        known = ", ".join(r.name for r in records[:10]) or "none"
        raise CatalogError(
            f"{'no' if not matches else 'more than one'} fleet dataset is named {ref!r} "
            f"(known: {known}); give its URN (see `hypernet catalog list`)"
        )
    return matches[0]


@app.command()
def show(ref: str = typer.Argument(..., help="Dataset URN, name or location.")) -> None:
    """One dataset: location, learning contract, columns and their canonical features, status."""
    settings = Settings()
    with _user_errors(), open_catalog_from_settings(settings) as cat:
        r = cat.get(_resolve(cat.list_fleet() if not ref.startswith("urn:li:") else [], ref))
        console.print(f"[bold]{escape(r.name)}[/]  {escape(r.urn)}")
        console.print(f"location    {escape(r.location)}")
        console.print(f"task        {r.task_type}, target {escape(r.target)}")
        if r.description:
            console.print(f"description {escape(r.description)}")
        console.print(f"registered  {r.registered_at.isoformat()}" + (f", updated {r.updated_at.isoformat()}" if r.updated_at else ""))
        console.print(f"validation  {_status(r)}" + (f" at {r.validation.at.isoformat()}" if r.validation else ""))
        onboard = f"model version {escape(r.onboarding.model_version)} at {r.onboarding.at.isoformat()}" if r.onboarding else "[dim]not yet[/]"
        console.print(f"onboarded   {onboard}")
        for title, values in (("Meta-features", r.meta), ("Statistics", r.stats)):
            if values:
                table = Table(title=title, title_justify="left")
                table.add_column("Name")
                table.add_column("Value")
                for key, value in sorted(values.items()):
                    table.add_row(escape(key), escape(repr(value)))
                console.print(table)
        columns = Table(title="Columns", title_justify="left")
        for column in ("Column", "Type", "Canonical feature"):
            columns.add_column(column)
        for f in r.fields:
            canonical = "[bold](target)[/]" if f.name == r.target else escape(r.field_mapping.get(f.name, f.name))
            columns.add_row(escape(f.name), escape(f.native_type), canonical)
        console.print(columns)
