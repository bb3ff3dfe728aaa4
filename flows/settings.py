"""One settings object for the whole pipeline.

Values come, highest first, from: keyword arguments, environment variables with the prefix
`HYPERNET_` (nested fields with `__`, e.g. `HYPERNET_CATALOG__ENGINE=duckdb`), a TOML file
(`HYPERNET_CONFIG`, default `hypernet.toml` in the working directory, optional), then defaults.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class CatalogSettings(BaseModel):
    backend: Literal["lite", "server"] = "lite"
    engine: Literal["sqlite", "duckdb"] = "sqlite"  # DataHub Lite engine
    file: Path | None = None  # default: <workspace>/catalog/datahub-lite.<engine>
    server_url: str = "http://localhost:8080"
    token: str | None = None  # read from HYPERNET_CATALOG__TOKEN, never written to logs
    fleet_tag: str = "hypernet"


class StorageSettings(BaseModel):
    lake: str | None = None  # local folder or s3://bucket/prefix; default <workspace>/lake
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    aws_profile: str | None = None  # credentials otherwise come from the standard AWS environment


class ValidationSettings(BaseModel):
    min_rows: int = 20
    max_missing_share: float = 0.5
    workers: int | None = None  # None: one process per CPU for large fleets
    # Statistics computed on valid data (flows.metafeatures) used as extra meta-features by the model,
    # e.g. ["log_n_rows", "missing_share"]; empty: declared meta-features only.
    stats_as_meta: list[str] = []


class TrackingSettings(BaseModel):
    tracking_uri: str | None = None  # default sqlite:///<workspace>/mlflow.db
    experiment: str = "hypernet"
    model_name: str = "hypernet-fleet"  # the registered model, and the model group in the catalog


class RetrainSettings(BaseModel):
    """What the retraining flow trains and how the new version is judged against the champion."""

    # One configuration and one budget for every model (chosen on HSB; see the demo notes).
    hidden: list[int] = [64, 64]
    embed_dropout: float = 0.1  # chance of training a dataset as "unknown": what zero-shot learns from
    max_steps: int = 500
    accumulate: int = 2
    eval_every: int = 25
    patience: int = 6
    unseen_folds: int = 5  # k-fold over whole datasets for the zero-shot evaluation; 0 skips it
    holdout: float = 0.25  # share of each dataset's rows held out for the seen evaluation
    baselines: list[str] = ["pooled", "per_dataset", "task_conditioned"]
    shots: list[int] = [5, 10, 20]
    # Promotion gate: at least as good as the champion overall, no known dataset worse by more than
    # this (in the task metric: R² or accuracy), and better than the pooled baseline.
    max_dataset_regression: float = 0.05
    workers: int | None = None  # training processes (default one per CPU core)
    work_pool: str = "hypernet-cpu"  # hypernet-gpu sends training to the Kubernetes GPU pool


class OnboardSettings(BaseModel):
    few_shot_rows: int = 20  # labelled rows used to adapt; the rest (if any) evaluate it


class StackSettings(BaseModel):
    """The local stack (`hypernet stack up`): every service on 127.0.0.1, state under <workspace>/stack."""

    host: str = "127.0.0.1"
    bucket: str = "hypernet"  # S3 bucket for the lake and MLflow artifacts
    cpu_pool: str = "hypernet-cpu"
    gpu_pool: str = "hypernet-gpu"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HYPERNET_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    workspace: Path = Path(".hypernet")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:N")
    seed: int = 0
    catalog: CatalogSettings = CatalogSettings()
    storage: StorageSettings = StorageSettings()
    tracking: TrackingSettings = TrackingSettings()
    validation: ValidationSettings = ValidationSettings()
    retrain: RetrainSettings = RetrainSettings()
    onboard: OnboardSettings = OnboardSettings()
    stack: StackSettings = StackSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("HYPERNET_CONFIG", "hypernet.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file))

    # Derived locations: everything the pipeline writes lives under the workspace.
    @property
    def reports_dir(self) -> Path:
        return self.workspace / "reports"

    @property
    def models_dir(self) -> Path:
        return self.workspace / "models"

    @property
    def catalog_file(self) -> Path:
        return self.catalog.file or self.workspace / "catalog" / f"datahub-lite.{self.catalog.engine}"

    @property
    def lake(self) -> str:
        return self.storage.lake or str(self.workspace / "lake")

    @property
    def stack_dir(self) -> Path:
        return self.workspace / "stack"

    @property
    def tracking_uri(self) -> str:
        return self.tracking.tracking_uri or f"sqlite:///{(self.workspace / 'mlflow.db').resolve()}"

    def resolve_device(self) -> str:
        """`auto` picks CUDA when a GPU is visible, else the CPU."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
