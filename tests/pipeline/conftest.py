"""A small real fleet (30 High School and Beyond schools) and a workspace for the flow tests.

The flows read their settings from the environment, as they do on a worker; Prefect runs them on
MLflow on SQLite, DataHub Lite, a local lake.
Prefect runs them on its temporary local server (see tests/conftest.py), as `hypernet demo` does."""

from __future__ import annotations

import numpy as np
import pytest

from flows import hsb

SCHOOLS = 30
HELD_BACK = 6

SMALL_BUDGET = {
    "HYPERNET_RETRAIN__MAX_STEPS": "120",
    "HYPERNET_RETRAIN__UNSEEN_FOLDS": "2",
    "HYPERNET_RETRAIN__SHOTS": "[5]",
    "HYPERNET_RETRAIN__EVAL_EVERY": "20",
    "HYPERNET_RETRAIN__WORKERS": "1",
}


@pytest.fixture(scope="session")
def small_hsb():
    """(fleet rows, held-back rows): 30 schools chosen with a fixed seed, 6 of them held back."""
    df = hsb.load_hsb()
    schools = np.sort(df[hsb.GROUP].unique())
    chosen = np.random.default_rng(0).choice(schools, SCHOOLS, replace=False)
    later = set(chosen[:HELD_BACK])
    fleet = df[df[hsb.GROUP].isin(chosen) & ~df[hsb.GROUP].isin(later)]
    return fleet, df[df[hsb.GROUP].isin(later)]


@pytest.fixture(scope="session")
def pipeline_env():
    """The environment a worker would have, for a workspace: small training budget."""
    return lambda workspace: {"HYPERNET_WORKSPACE": str(workspace), **SMALL_BUDGET}
