"""`hypernet stack up|down|status` and `hypernet ui`: the local service stack (infra/stack.py).

    hypernet stack up       # SeaweedFS S3, Prefect server + process worker, MLflow server; detached
    hypernet stack status   # exit code 0 when every service is healthy, 1 otherwise
    hypernet stack down     # stop everything by PID; data, logs and credentials stay
    hypernet ui             # the MLflow UI: the stack's server, or `mlflow ui` on the workspace's store

After `stack up`, `source <workspace>/stack/env.sh` points any shell at the stack.
"""

from __future__ import annotations

import time
import webbrowser
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flows.settings import Settings
from infra import stack

app = typer.Typer(help="The local service stack: SeaweedFS S3, Prefect server and worker, MLflow server.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
console = Console()


def _table(statuses: list[stack.ServiceStatus]) -> Table:
    table = Table(title="hypernet stack")
    for column in ("service", "state", "URL", "PID", "health", "log"):
        table.add_column(column, overflow="fold")
    for s in statuses:
        state = "[green]running" if s.running else "[red]stopped"
        health = f"[green]{escape(s.detail)}" if s.healthy else f"[red]{escape(s.detail)}"
        table.add_row(s.name, state, s.url or "", str(s.pid or ""), health, s.log or "")
    return table


def _show(settings: Settings) -> bool:
    """Print the services table (and the GPU pool's state); True when all are healthy."""
    statuses = stack.status(settings.workspace)
    console.print(_table(statuses))
    state = stack.load_state(settings.workspace)
    if state is not None:
        console.print(f"Work pools: [bold]{state.cpu_pool}[/] (process); "
                      f"[bold]{state.gpu_pool}[/] (kubernetes) {escape(state.gpu_pool_note)}")
    return all(s.healthy for s in statuses)


@app.command()
def up(timeout: float = typer.Option(120.0, help="Seconds to wait for each service to become healthy.")) -> None:
    """Start the stack (detached) and wait until every service is healthy."""
    settings = Settings()
    started_at = time.monotonic()
    try:
        with console.status("Starting SeaweedFS, Prefect (server, worker) and MLflow…"):
            state, started = stack.up(settings.workspace, host=settings.stack.host, bucket=settings.stack.bucket,
                                      cpu_pool=settings.stack.cpu_pool, gpu_pool=settings.stack.gpu_pool,
                                      timeout=timeout)
    except stack.StackError as exc:
        console.print(f"[red]stack up failed:[/] {escape(str(exc))}")
        raise typer.Exit(1)
    if started:
        console.print(f"[green]Stack up[/] in {time.monotonic() - started_at:.1f} s.")
    else:
        console.print("The stack is already up.")
    _show(settings)
    console.print(f"Use it from any shell: [bold]source {state.stack_dir / 'env.sh'}[/]")


@app.command()
def down(timeout: float = typer.Option(20.0, help="Seconds each service gets to stop before it is killed.")) -> None:
    """Stop every service of the stack by PID; data, logs and credentials are kept."""
    settings = Settings()
    try:
        stopped = stack.down(settings.workspace, timeout=timeout)
    except stack.StackError as exc:
        console.print(f"[red]stack down incomplete:[/] {escape(str(exc))}")
        raise typer.Exit(1)
    console.print(f"Stopped: {', '.join(stopped)}." if stopped else "No stack was running.")


@app.command()
def status() -> None:
    """Show each service: running or not, URL, health. Exit code 0 when all are healthy."""
    if not _show(Settings()):
        raise typer.Exit(1)


def _open(url: str, browser: bool) -> None:
    console.print(f"MLflow UI: [bold]{url}[/]")
    if browser:
        try:
            webbrowser.open(url)
        except Exception:  # no browser (server, container): the URL is printed anyway
            pass


def ui(
    port: Optional[int] = typer.Option(None, help="Port for `mlflow ui` (default: a free one). Ignored when "
                                                  "the stack is up."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only print the URL."),
) -> None:
    """Open the MLflow UI: the stack's server when it is up, else `mlflow ui` on the workspace's
    tracking store in the foreground (Ctrl-C stops it)."""
    settings = Settings()
    env = stack.stack_env(settings.workspace)
    tracking_uri = env["HYPERNET_TRACKING__TRACKING_URI"] if env else settings.tracking_uri
    if tracking_uri.startswith(("http://", "https://")):  # a running server: nothing to start
        _open(tracking_uri, not no_browser)
        return
    console.print(f"Starting `mlflow ui` on {escape(tracking_uri)} (Ctrl-C stops it)…")
    code = stack.serve_mlflow_ui(tracking_uri, port=port, on_ready=lambda url: _open(url, not no_browser))
    if code:
        raise typer.Exit(code)
