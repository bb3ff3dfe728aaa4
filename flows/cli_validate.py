"""`hypernet validate`: validate fleet datasets and show who is quarantined and why.

    hypernet validate --demo                 # generate the demo fleet + broken corpus, validate both
    hypernet validate PATH                   # a contracts.json/.yaml, or a folder (or s3:// prefix) holding one
    hypernet validate PATH --docs            # also build GE Data Docs
    hypernet validate PATH --json            # machine-readable summary on stdout

Results are always kept as JSON under <workspace>/reports/validation/<time>/. The exit code is 0
when at least one dataset is valid (quarantine is a normal outcome), 1 when none is (or, with
--strict, when any is quarantined). Catalog-driven validation is wired by the pipeline's flows,
which build the same contracts from the catalog.
"""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

# Options may follow the path (`validate PATH --docs`): the group has no sub-commands to confuse them with.
app = typer.Typer(help="Validate fleet datasets with Great Expectations.", pretty_exceptions_show_locals=False,
                  context_settings={"allow_interspersed_args": True}, subcommand_metavar="")


@app.callback(invoke_without_command=True)
def validate(
    ctx: typer.Context,
    path: Optional[str] = typer.Argument(None, help="contracts.json/.yaml, or a folder or s3:// prefix holding one "
                                                    "(default: the catalog's fleet, verdicts written back)."),
    demo: bool = typer.Option(False, "--demo", help="Generate the demo hospitals fleet and the broken corpus "
                                                    "under <workspace>/demo and validate both."),
    demo_size: int = typer.Option(50, help="Number of healthy hospitals in the demo fleet."),
    docs: bool = typer.Option(False, "--docs", help="Also build GE Data Docs and print where they are."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default: one per CPU for large fleets)."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON summary instead of the report."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 if any dataset is quarantined."),
    show_valid: int = typer.Option(15, help="How many valid datasets to list (0: none)."),
) -> None:
    """Validate datasets described by contracts; quarantine failures and report why."""
    if ctx.invoked_subcommand is not None:
        return
    from flows.settings import get_settings
    from flows.storage import Lake

    console = Console(stderr=as_json)
    settings = get_settings()
    lake = Lake.from_settings(settings)
    if path is None and not demo:  # the catalog's fleet; verdicts and stats are written back to it
        contracts, fleet, summary = _validate_catalog(settings, workers, console)
    else:
        contracts = _contracts(path, demo, demo_size, settings, lake, console)
        fleet, summary = _validate(contracts, lake, workers, settings, console)
    if as_json:
        typer.echo(json.dumps(fleet.to_dict(), indent=1, default=str))
    else:
        render_report(fleet, console, show_valid=show_valid)
    console.print(f"Results: [bold]{escape(str(summary))}[/]")
    if docs:
        _build_docs(contracts, lake, settings, console)
    _exit(fleet, strict, console)


def _validate(contracts: list, lake, workers: Optional[int], settings, console: Console):
    """Run the fleet's suites and keep the results under the workspace (returns the summary's
    path); storage errors (credentials, endpoint) end the command with a clear message."""
    from flows.validation import now_utc, validate_fleet

    results_dir = settings.reports_dir / "validation" / now_utc()
    try:
        with console.status(f"Validating {len(contracts)} dataset(s)..."):
            fleet = validate_fleet(contracts, lake, workers=workers, results_dir=results_dir)
    except (PermissionError, ConnectionError) as exc:
        console.print(f"[bold red]Storage error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    return fleet, results_dir / "summary.json"


def _validate_catalog(settings, workers: Optional[int], console: Console):
    from flows.fleet_io import list_fleet, validate_catalog_fleet
    from flows.validation import contract_from_record, now_utc

    records = list_fleet(settings)
    if not records:
        console.print("[red]Nothing to validate:[/] the catalog holds no fleet dataset "
                      "(`hypernet catalog import ...`), or pass a contracts file, or --demo.")
        raise typer.Exit(2)
    if workers is not None:
        settings = settings.model_copy(update={"validation": settings.validation.model_copy(update={"workers": workers})})
    results_dir = settings.reports_dir / "validation" / now_utc()
    with console.status(f"Validating {len(records)} catalog dataset(s)..."):
        fleet = validate_catalog_fleet(settings, records, results_dir=results_dir)
    console.print(f"Verdicts and statistics written to the catalog ({settings.catalog.backend}).")
    return [contract_from_record(r) for r in records], fleet, results_dir / "summary.json"


def _build_docs(contracts: list, lake, settings, console: Console) -> None:
    from flows.validation import build_data_docs

    with console.status("Building Great Expectations Data Docs..."):
        index = build_data_docs(contracts, settings.workspace, lake)  # GE keeps its project in gx/
    console.print(f"Data Docs: [bold]{escape(str(index))}[/]")


def _exit(fleet, strict: bool, console: Console) -> None:
    """0 while something is left to train on; 1 when nothing is (or, with --strict, on any quarantine)."""
    from flows.validation import NoValidDatasetError

    try:
        fleet.require_valid()
    except NoValidDatasetError as exc:
        console.print(f"[bold red]Error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if strict and fleet.quarantined:
        raise typer.Exit(1)


def _contracts(path: Optional[str], demo: bool, demo_size: int, settings, lake, console: Console) -> list:
    from flows.validation import load_contracts

    if demo:
        from flows.fleetgen import write_demo

        paths = write_demo(settings.workspace / "demo", n=demo_size, seed=settings.seed)
        console.print(f"Demo fleet written to [bold]{escape(str(settings.workspace / 'demo'))}[/]")
        return load_contracts(paths["hospitals"]) + load_contracts(paths["broken"])
    if path is None:
        console.print("[red]Nothing to validate:[/] pass a contracts file or folder, or --demo.")
        raise typer.Exit(2)
    try:
        return load_contracts(path, lake)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        console.print(f"[red]Cannot read contracts from {escape(str(path))}:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


def render_report(fleet, console: Console, show_valid: int = 15) -> None:
    """The Rich report: a summary line, every quarantined dataset with its reasons and fixes,
    and the first valid datasets with their computed stats."""
    n, n_ok = len(fleet.results), len(fleet.valid)
    style = "green" if n_ok == n else "yellow" if n_ok else "red"
    console.print(Panel(f"[bold]{n}[/] datasets: [green]{n_ok} valid[/], [red]{n - n_ok} quarantined[/] "
                        f"in {fleet.seconds:.1f} s ({fleet.workers} worker(s))",
                        title="Validation", border_style=style))
    if fleet.quarantined:
        console.print(_quarantine_table(fleet.quarantined))
    if fleet.valid and show_valid:
        console.print(_valid_table(fleet.valid, show_valid))


def _quarantine_table(results) -> Table:
    table = Table(title="Quarantined (excluded from training)", show_lines=True, title_justify="left")
    table.add_column("dataset", style="bold", overflow="fold", max_width=24)
    table.add_column("check", style="cyan", overflow="fold", max_width=26)
    table.add_column("column", overflow="fold", max_width=20)
    table.add_column("rows", justify="right")
    table.add_column("what is wrong / [dim]how to fix it[/]", ratio=1, overflow="fold")
    for r in results:
        for i, f in enumerate(r.failures):
            column = f.column or "-"
            if f.source_column and f.source_column != f.column:
                column += f" (source: {f.source_column})"
            table.add_row(escape(r.name) if i == 0 else "", f.check, escape(column), "" if f.rows is None else str(f.rows),
                          f"{escape(f.detail)}\n[dim]fix: {escape(f.fix)}[/]")
    return table


def _valid_table(results, limit: int) -> Table:
    table = Table(title=f"Valid ({len(results)})", title_justify="left")
    for col in ("dataset", "rows", "features", "missing", "target mean", "target std"):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    for r in results[:limit]:
        s = r.stats
        table.add_row(escape(r.name), str(r.n_rows), f"{s.get('n_features', 0):.0f}", f"{s.get('missing_share', 0):.1%}",
                      _fmt(s.get("target_mean")), _fmt(s.get("target_std")))
    if len(results) > limit:
        table.add_row(f"... and {len(results) - limit} more", "", "", "", "", "")
    return table


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}"
