"""The `hypernet` command line (Typer + Rich)."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="hypernet",
    help="One hypernetwork for a fleet of datasets: train, evaluate, catalog, validate.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


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

if __name__ == "__main__":
    app()
