"""`hypernet deploy`: the deployments of prefect.yaml, registered with the configured Prefect server.

It runs Prefect's own `prefect deploy` (the one reading prefect.yaml), with the stack's environment
when `hypernet stack up` is running, and sends `retrain` to the pool named by `retrain.work_pool`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flows.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parent.parent  # where prefect.yaml lives


class DeployError(RuntimeError):
    pass


def deploy_env(settings: Settings) -> dict[str, str]:
    from infra.stack import stack_env

    env = dict(os.environ) | (stack_env(settings.workspace) or {})
    if not env.get("PREFECT_API_URL"):
        raise DeployError("no Prefect server to deploy to: start the local stack with `hypernet stack up`, "
                          "or set PREFECT_API_URL to your server's API")
    return env | {"HYPERNET_PROJECT_DIR": str(PROJECT_DIR)}


def deploy_all(settings: Settings) -> list[str]:
    env = deploy_env(settings)
    prefect = str(Path(sys.executable).parent / "prefect")
    plans = [["--name", "retrain", "--pool", settings.retrain.work_pool], ["--name", "onboard"]]
    lines = []
    for args in plans:
        done = subprocess.run([prefect, "--no-prompt", "deploy", *args], cwd=PROJECT_DIR, env=env,
                              capture_output=True, text=True)
        if done.returncode:
            raise DeployError(f"`prefect deploy {' '.join(args)}` failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        lines.append(f"deployed {args[1]} ({' '.join(args[2:]) or 'pool from prefect.yaml'}) to {env['PREFECT_API_URL']}")
    return lines
