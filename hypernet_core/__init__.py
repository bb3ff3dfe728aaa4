"""hypernet_core: one hypernetwork for a fleet of datasets (pure PyTorch).

Typical use:
    enc = FleetEncoder.fit(tables, task="regression")
    fleet = enc.transform(tables)
    model = build_model("hypernetwork", ModelConfig(), enc.n_features, enc.meta_dim, enc.out_dim, len(tables))
    fit(model, fleet, TrainConfig())
    evaluate(model, fleet).overall
"""

from hypernet_core.baselines import PerDatasetModel, PooledModel, TaskConditionedModel, build_model
from hypernet_core.config import ModelConfig, TrainConfig
from hypernet_core.errors import FleetError
from hypernet_core.fleet import (UNKNOWN, DatasetTable, Fleet, FleetEncoder, holdout_tables, kfold_datasets,
                                  split_rows)
from hypernet_core.metrics import Evaluation, r2
from hypernet_core.model import Conditioning, FleetModel, HyperNetwork
from hypernet_core.train import FitResult, evaluate, fit, predict

__all__ = [
    "UNKNOWN", "Conditioning", "DatasetTable", "Evaluation", "FitResult", "Fleet", "FleetEncoder", "FleetError",
    "FleetModel", "HyperNetwork", "ModelConfig", "PerDatasetModel", "PooledModel", "TaskConditionedModel",
    "TrainConfig", "build_model", "evaluate", "fit", "holdout_tables", "kfold_datasets", "predict", "r2", "split_rows",
]
