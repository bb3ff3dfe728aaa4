"""DataHub's own `datahub lite` CLI shows what the catalog wrote, so users can browse it with DataHub's tools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from catalog_testkit import LITE_ENGINES, register

from catalog import open_catalog


_SEP = "----- next command -----"
_RUNNER = f"""
import json, sys
from datahub.entrypoints import datahub
for args in json.loads(sys.argv[1]):
    print({_SEP!r}, flush=True)
    datahub.main(["lite", *args], prog_name="datahub", standalone_mode=False)
"""


def _datahub_lite(home: Path, *commands: list[str]) -> list[str]:
    """Run `datahub lite <command>` for each command, in one fresh process (the CLI takes seconds to import)."""
    env = {**os.environ, "HOME": str(home), "DATAHUB_TELEMETRY_ENABLED": "false"}
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps(commands)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split(_SEP + "\n")[1:]


def _home_pointing_at(tmp_path: Path, engine: str, file: Path) -> Path:
    """`datahub lite` reads ~/.datahubenv only, and crashes without a `gms:` section."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".datahubenv").write_text(
        f"gms:\n  server: http://localhost:8080\nlite:\n  type: {engine}\n  config:\n    file: {file}\n"
    )
    return home


@pytest.mark.parametrize("engine", LITE_ENGINES)
def test_datahub_lite_shows_the_fleet_and_the_models(tmp_path: Path, lake: Path, engine: str) -> None:
    file = tmp_path / f"catalog.{engine}"
    with open_catalog(engine=engine, file=file, lake=str(lake)) as cat:
        a = register(cat, lake, "school_a")
        b = register(cat, lake, "school_b")
        model = cat.publish_model("hypernet-fleet", 1, {"r2": 0.2}, {"lr": 0.01}, ["champion"], [a.urn, b.urn])
        weights = cat.publish_generated_weights(b.urn, 1, lake / "w" / "b.safetensors", {}, group_name="hypernet-fleet")
    home = _home_pointing_at(tmp_path, engine, file)

    commands = [["list-urns"], ["ls", "/data_platforms/file/instances/default/datasets"], ["get", "--urn", model]]
    urns, names, shown = _datahub_lite(home, *commands)
    assert {a.urn, b.urn, model, weights, "urn:li:tag:hypernet"} <= set(urns.split())
    assert names.split() == ["school_a", "school_b"]
    model_json = json.loads(shown)
    assert model_json["mlModelProperties"]["groups"] == ["urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,hypernet-fleet,PROD)"]
    assert model_json["versionProperties"]["aliases"] == [{"versionTag": "champion"}]
    assert model_json["mlModelProperties"]["trainingJobs"] == [
        "urn:li:dataJob:(urn:li:dataFlow:(prefect,hypernet-fleet-training,PROD),train-1)"
    ]
