"""MLflow adapter: the served fleet model, the registry (aliases) and what a training run logs.

The served model (`FleetPyfunc`) wraps a `hypernet_core.io.save_model` folder. One request may mix rows of
many datasets; each row says which dataset it belongs to:

- a known dataset: column `dataset` holds one of the training datasets' names; its learned embedding and
  its stored meta-features (`model.json` -> `dataset_meta`) are used;
- a new dataset: `dataset` holds a new name or is empty, and meta-feature columns `meta.<key>` describe
  it (zero-shot: the "unknown" embedding plus those meta-features). Rows without a name that share the
  same meta values form one dataset. A meta-feature left out or null is treated as missing (its mean);
  a new dataset with none of them is refused. `meta.*` values on a known dataset's rows are ignored.

Feature columns carry the canonical feature names; a missing column or a null value is a missing
(masked) feature. The answer is a DataFrame with one column `prediction`, in the input's row order:
target units for regression, class labels for classification.

Everything else here is a small function over `mlflow` / `MlflowClient` for the flows.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.metadata
import json
import math
import re
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import Model, ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec, Schema

import hypernet_core
from hypernet_core import DatasetTable, FleetEncoder, FleetError, FleetModel
from hypernet_core.io import SPEC, load_model
from hypernet_core.train import predict as model_outputs

if TYPE_CHECKING:
    from flows.settings import Settings

DATASET_COLUMN = "dataset"
META_PREFIX = "meta."
PREDICTION_COLUMN = "prediction"
CHAMPION, CHALLENGER = "champion", "challenger"
REQUIREMENTS = ("mlflow", "cloudpickle", "torch", "numpy", "pandas", "safetensors", "rich")
PARAM_VALUE_MAX = 6000  # MLflow 3 limit on a param value (older servers: 500)
SECRET_SETTINGS = ("catalog.token",)  # never logged


# ---- the served model ------------------------------------------------------------------------------
class FleetPyfunc(mlflow.pyfunc.PythonModel):
    """A `save_model` folder (artifact "model") served as one pyfunc for every dataset of the fleet."""

    def load_context(self, context) -> None:
        self.model, self.encoder, self.spec = load_model(context.artifacts["model"], "cpu")

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return predict_frame(self.model, self.encoder, self.spec, model_input)


def predict_frame(model: FleetModel, encoder: FleetEncoder, spec: Mapping, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of any number of datasets -> `prediction` per row, in input order, in one batched pass."""
    frame = pd.DataFrame(frame)
    _check_columns(encoder, frame)
    if len(frame) == 0:
        return pd.DataFrame({PREDICTION_COLUMN: pd.Series([], dtype=object)}, index=frame.index)
    groups = _group_rows(encoder, spec, frame)
    features = {f: _numeric_column(frame, f) for f in encoder.features if f in frame.columns}
    tables = [DatasetTable(name, {f: v[rows] for f, v in features.items()}, _dummy_target(encoder, len(rows)), meta)
              for name, rows, meta in groups]
    # min_rows guards training; one row is enough to predict.
    fleet = replace(encoder, min_rows=1).transform(tables)
    values = _decode(encoder, model_outputs(model, fleet).cpu().numpy())
    out = np.empty(len(frame), dtype=values.dtype)
    out[np.concatenate([rows for _, rows, _ in groups])] = values
    return pd.DataFrame({PREDICTION_COLUMN: out}, index=frame.index)


def _check_columns(encoder: FleetEncoder, frame: pd.DataFrame) -> None:
    meta_keys = _meta_keys(encoder)
    for col in frame.columns:
        if col == DATASET_COLUMN or col in encoder.features:
            continue
        if isinstance(col, str) and col.startswith(META_PREFIX):
            if col[len(META_PREFIX):] not in meta_keys:
                raise FleetError("<input>", col, "not a meta-feature of this model",
                                 f"use one of {[META_PREFIX + k for k in meta_keys]} or drop the column")
            continue
        raise FleetError("<input>", str(col), "neither a canonical feature, the dataset column nor a meta.* column",
                         f"name features as {encoder.features}, the dataset as {DATASET_COLUMN!r}, "
                         f"meta-features as {META_PREFIX}<key>; or drop the column")
    if not any(f in frame.columns for f in encoder.features):
        raise FleetError("<input>", "features", "no canonical feature column in the input",
                         f"send at least one of {encoder.features} (null where a value is missing)")


def _meta_keys(encoder: FleetEncoder) -> list[str]:
    return [*encoder.numeric_meta, *encoder.categorical_meta]


def _group_rows(encoder: FleetEncoder, spec: Mapping, frame: pd.DataFrame) -> list[tuple[str, np.ndarray, dict]]:
    """(dataset name, row positions, meta-features) for every distinct dataset of the input."""
    names = [_dataset_name(v) for v in frame[DATASET_COLUMN]] if DATASET_COLUMN in frame.columns \
        else [None] * len(frame)
    meta_cols = [c for c in frame.columns if isinstance(c, str) and c.startswith(META_PREFIX)]
    meta_rows = [tuple(_meta_value(v) for v in row) for row in frame[meta_cols].itertuples(index=False, name=None)] \
        if meta_cols else [()] * len(frame)
    known = set(encoder.datasets)
    keys: dict[tuple, list[int]] = {}
    for i, (name, meta) in enumerate(zip(names, meta_rows)):
        keys.setdefault((name, None) if name in known else (name, meta), []).append(i)
    groups, new_names = [], {}
    for (name, meta), rows in keys.items():
        if name in known:
            groups.append((name, np.asarray(rows), _known_meta(spec, name, meta_cols, meta_rows[rows[0]])))
            continue
        new_meta = {c[len(META_PREFIX):]: v for c, v in zip(meta_cols, meta) if v is not None}
        if not new_meta and _meta_keys(encoder):
            raise _no_meta_error(encoder, name)
        if name is not None and name in new_names:
            raise FleetError(name, "meta", "rows of this new dataset carry different meta-feature values",
                             "give every row of a dataset the same meta.* values")
        label = name if name is not None else f"<new dataset {len(new_names) + 1}>"
        new_names[label] = True
        groups.append((label, np.asarray(rows), new_meta))
    return groups


def _known_meta(spec: Mapping, name: str, meta_cols: list[str], row_meta: tuple) -> dict:
    stored = (spec.get("dataset_meta") or {}).get(name)
    if stored is not None:
        return dict(stored)
    given = {c[len(META_PREFIX):]: v for c, v in zip(meta_cols, row_meta) if v is not None}
    if given:
        return given
    raise FleetError(name, "meta", "the model folder stores no meta-features for this training dataset",
                     "send its meta.* columns with the rows, or save the model with extra={'dataset_meta': ...}")


def _no_meta_error(encoder: FleetEncoder, name: str | None) -> FleetError:
    keys = [META_PREFIX + k for k in _meta_keys(encoder)]
    if name is None:
        return FleetError("<unnamed>", DATASET_COLUMN, "row has neither a dataset name nor meta-features",
                          f"put a training dataset's name in {DATASET_COLUMN!r}, or describe a new dataset "
                          f"with {keys}")
    close = difflib.get_close_matches(name, encoder.datasets, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return FleetError(name, DATASET_COLUMN, "not a dataset the model was trained on, and its rows carry no "
                      "meta-features for a zero-shot prediction",
                      f"{hint}use one of the {len(encoder.datasets)} training dataset names, or send {keys} "
                      "for a new dataset")


def _dataset_name(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v == "":
        return None
    return str(v)


def _meta_value(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and math.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


def _numeric_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    try:
        return frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as e:
        raise FleetError("<input>", column, f"values are not numbers ({e})",
                         "send numbers, or null where the value is missing") from None


def _dummy_target(encoder: FleetEncoder, n: int) -> np.ndarray:
    """`transform` encodes a target; for prediction any valid one will do (it is never read)."""
    if encoder.task == "regression":
        return np.zeros(n)
    return np.array([encoder.classes[0]] * n, dtype=object)


def _decode(encoder: FleetEncoder, out: np.ndarray) -> np.ndarray:
    if encoder.task == "regression":
        return encoder.decode_target(out[:, 0].astype(np.float64))
    return np.asarray(encoder.classes, dtype=object)[out.argmax(1)]


def serving_signature(encoder: FleetEncoder) -> ModelSignature:
    """Every input column is optional: a row names its dataset or describes it, features may be missing."""
    inputs = [ColSpec("string", DATASET_COLUMN, required=False)]
    inputs += [ColSpec("double", f, required=False) for f in encoder.features]
    inputs += [ColSpec("double", META_PREFIX + k, required=False) for k in encoder.numeric_meta]
    inputs += [ColSpec("string", META_PREFIX + k, required=False) for k in encoder.categorical_meta]
    if encoder.task == "regression":
        out_type = "double"
    else:
        out_type = "long" if all(isinstance(c, int) and not isinstance(c, bool) for c in encoder.classes) else "string"
    return ModelSignature(Schema(inputs), Schema([ColSpec(out_type, PREDICTION_COLUMN)]))


# ---- logging the model -----------------------------------------------------------------------------
def pip_requirements() -> list[str]:
    """Pinned to what is installed here (public version: torch's +cpu/+cu label is the index's business)."""
    from packaging.version import Version

    return [f"{name}=={Version(importlib.metadata.version(name)).public}" for name in REQUIREMENTS]


def log_fleet_model(model_dir: str | Path, name: str = "model", registered_model_name: str | None = None,
                    input_example: pd.DataFrame | None = None) -> ModelInfo:
    """Log a `save_model` folder as a pyfunc (LoggedModel); registered as a new version when a name is given.

    `hypernet_core` travels as code with the model; `FleetPyfunc` is pickled by value, so the served model
    needs neither this project nor its settings, only the pinned requirements."""
    model_dir = Path(model_dir)
    spec = json.loads((model_dir / SPEC).read_text())
    encoder = FleetEncoder.from_dict(spec["encoder"])
    if input_example is None:
        input_example = example_frame(encoder, spec)
    with _pickled_by_value(sys.modules[__name__]):
        return mlflow.pyfunc.log_model(
            name=name, python_model=FleetPyfunc(), artifacts={"model": str(model_dir)},
            code_paths=[str(Path(hypernet_core.__file__).parent)], pip_requirements=pip_requirements(),
            signature=serving_signature(encoder), input_example=input_example,
            registered_model_name=registered_model_name)


def example_frame(encoder: FleetEncoder, spec: Mapping) -> pd.DataFrame:
    """A request in the served model's format: a row of a training dataset and, when the model folder
    stores meta-features, a row of a new (unnamed) dataset described by them. Features at their means."""
    features = dict(zip(encoder.features, encoder.feature_mean))
    rows = [{DATASET_COLUMN: encoder.datasets[0], **features}]
    stored = (spec.get("dataset_meta") or {}).get(encoder.datasets[0])
    if stored:
        keys = set(_meta_keys(encoder))
        rows.append({DATASET_COLUMN: None, **features, **{META_PREFIX + k: v for k, v in stored.items() if k in keys}})
    return pd.DataFrame(rows)


@contextlib.contextmanager
def _pickled_by_value(module):
    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)


# ---- configuration and registry ----------------------------------------------------------------------
def configure(settings: "Settings", artifact_location: str | None = None) -> str:
    """Point mlflow at the settings' tracking URI and experiment (created if missing); the experiment id.

    With a local SQLite store, artifacts default to `mlartifacts/` beside the database (not the working
    directory, which is MLflow's own default)."""
    uri = settings.tracking_uri
    mlflow.set_tracking_uri(uri)  # the registry follows the tracking URI unless MLFLOW_REGISTRY_URI says otherwise
    name = settings.tracking.experiment
    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        mlflow.set_experiment(experiment_id=found.experiment_id)
        return found.experiment_id
    if artifact_location is None and uri.startswith("sqlite:///"):
        artifact_location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    experiment_id = client.create_experiment(name, artifact_location=artifact_location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def model_uri(name: str, alias_or_version: str | int) -> str:
    """`models:/name@alias` or `models:/name/version`."""
    if isinstance(alias_or_version, int) or str(alias_or_version).isdigit():
        return f"models:/{name}/{int(alias_or_version)}"
    return f"models:/{name}@{alias_or_version}"


def register_version(model_uri: str, name: str, run_id: str | None = None,
                     tags: Mapping[str, Any] | None = None) -> int:
    """A new version of registered model `name` (created if missing) from a logged model; its number."""
    client = MlflowClient()
    if not _registered_model_exists(client, name):
        client.create_registered_model(name)
    model_id = _logged_model_id(model_uri)
    if run_id is None and model_id is not None:
        run_id = client.get_logged_model(model_id).source_run_id
    version = client.create_model_version(name, source=model_uri, run_id=run_id, model_id=model_id,
                                          tags={k: str(v) for k, v in (tags or {}).items()})
    return int(version.version)


def set_alias(name: str, alias: str, version: int) -> None:
    MlflowClient().set_registered_model_alias(name, alias, str(version))


def alias_version(name: str, alias: str) -> int | None:
    """The version an alias points to; None when the model or the alias does not exist."""
    client = MlflowClient()
    if not _registered_model_exists(client, name):
        return None
    aliases = client.get_registered_model(name).aliases
    return int(aliases[alias]) if alias in aliases else None


def champion_version(name: str) -> int | None:
    return alias_version(name, CHAMPION)


def get_version(name: str, alias_or_version: str | int):
    """The registry's ModelVersion for an alias or a version number."""
    client = MlflowClient()
    if isinstance(alias_or_version, int) or str(alias_or_version).isdigit():
        return client.get_model_version(name, str(alias_or_version))
    return client.get_model_version_by_alias(name, str(alias_or_version))


def version_run_id(name: str, alias_or_version: str | int) -> str | None:
    return get_version(name, alias_or_version).run_id


def version_tags(name: str, alias_or_version: str | int) -> dict[str, str]:
    return dict(get_version(name, alias_or_version).tags)


def set_version_tags(name: str, version: int, tags: Mapping[str, Any]) -> None:
    client = MlflowClient()
    for k, v in tags.items():
        client.set_model_version_tag(name, str(version), k, str(v))


def download_model_dir(name: str, alias_or_version: str | int, dst: str | Path | None = None) -> Path:
    """The `save_model` folder (model.safetensors + model.json) of a registered version, on local disk."""
    dst = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="hypernet-model-"))
    local = Path(mlflow.artifacts.download_artifacts(model_uri(name, alias_or_version), dst_path=str(dst)))
    conf = Model.load(str(local / "MLmodel")).flavors["python_function"]
    return local / conf["artifacts"]["model"]["path"]


def load_registered(name: str, alias_or_version: str | int):
    """A registered version as (FleetModel, FleetEncoder, spec), loaded from a download that is
    removed again (the tensors are in memory once loaded)."""
    from hypernet_core.io import load_model

    with tempfile.TemporaryDirectory(prefix="hypernet-model-") as tmp:
        return load_model(download_model_dir(name, alias_or_version, dst=tmp))


def _registered_model_exists(client: MlflowClient, name: str) -> bool:
    return bool(client.search_registered_models(filter_string=f"name = '{_quote(name)}'", max_results=1))


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def _logged_model_id(uri: str) -> str | None:
    m = re.fullmatch(r"models:/(m-[0-9a-f]+)", uri)
    return m.group(1) if m else None


# ---- what a training run logs (inside an active run) ----------------------------------------------------
def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def log_settings(settings: "Settings") -> None:
    """Settings as flat params (`tracking.experiment`, ...) and in full as `settings.json`; secrets left out."""
    data = settings.model_dump(mode="json")
    flat = {k: v for k, v in flatten(data).items() if k not in SECRET_SETTINGS}
    mlflow.log_params({k: _param_value(v) for k, v in flat.items()})
    for key in SECRET_SETTINGS:
        head, _, tail = key.partition(".")
        if isinstance(data.get(head), dict) and data[head].get(tail) is not None:
            data[head][tail] = "<redacted>"
    mlflow.log_dict(data, "settings.json")


def _param_value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return text if len(text) <= PARAM_VALUE_MAX else text[: PARAM_VALUE_MAX - 1] + "…"


def metric_name(*parts: str) -> str:
    """Parts joined by '.', each reduced to what every MLflow backend accepts in a metric name."""
    return ".".join(re.sub(r"[^A-Za-z0-9_\- ]", "_", str(p)) for p in parts)


def log_per_dataset_metrics(per_model: Mapping[str, Mapping[str, float]], split: str = "seen") -> pd.DataFrame:
    """Per-dataset metric of every model: `per_dataset_<split>.csv` (dataset × model) and metrics
    `<split>.<model>.<dataset>` (names sanitised; the CSV keeps the real dataset names)."""
    table = pd.DataFrame({model: pd.Series(values, dtype=float) for model, values in per_model.items()})
    table.index.name = "dataset"
    mlflow.log_text(table.to_csv(), f"per_dataset_{split}.csv")
    metrics = {metric_name(split, model, dataset): float(v)
               for model, values in per_model.items() for dataset, v in values.items() if _finite(v)}
    mlflow.log_metrics(metrics)
    return table


def log_comparison(report: Mapping[str, Any]) -> None:
    """Summary metrics (`<model>.seen`, `<model>.unseen`, `<model>.n_parameters`, few-shot curve, verdict)
    and the whole report as `comparison.json`."""
    metrics: dict[str, float] = {}
    for kind, r in {**report.get("models", {}), **report.get("references", {})}.items():
        for split in ("seen", "unseen"):
            if _finite(r.get(split)):
                metrics[metric_name(kind, split)] = float(r[split])
        if _finite((r.get("params") or {}).get("total")):
            metrics[metric_name(kind, "n_parameters")] = float(r["params"]["total"])
    for k, entry in (report.get("few_shot") or {}).items():
        if isinstance(entry, Mapping) and _finite(entry.get("metric")):
            metrics[metric_name("hypernetwork", "unseen", f"{k}_shot")] = float(entry["metric"])
    for k, v in (report.get("transfer") or {}).items():
        if _finite(v):
            metrics[metric_name("transfer", k)] = float(v)
    if isinstance(report.get("verdict"), Mapping) and "worth_it" in report["verdict"]:
        metrics["verdict.worth_it"] = float(bool(report["verdict"]["worth_it"]))
    mlflow.log_metrics(metrics)
    mlflow.log_text(json.dumps(report, indent=2, default=_json_default), "comparison.json")


def log_figures(paths: Iterable[str | Path], folder: str = "figures") -> None:
    for path in paths:
        mlflow.log_artifact(str(path), artifact_path=folder)


def log_validation(results: list[Mapping[str, Any]]) -> None:
    """Validation verdicts (`DatasetValidation.to_dict()`): `validation.json`, a summary CSV and counts."""
    mlflow.log_text(json.dumps({"datasets": results}, indent=1, default=_json_default), "validation.json")
    summary = pd.DataFrame([{k: r.get(k) for k in ("name", "ok", "reason", "n_rows", "urn", "location")}
                            for r in results])
    mlflow.log_text(summary.to_csv(index=False), "validation.csv")
    n_valid = sum(bool(r.get("ok")) for r in results)
    mlflow.log_metrics({"validation.n_datasets": len(results), "validation.n_valid": n_valid,
                        "validation.n_quarantined": len(results) - n_valid})


def log_datasets(records: list[Mapping[str, Any]], context: str = "training") -> None:
    """The datasets a run used (name, urn, location, content_hash): `datasets.json` and MLflow dataset
    inputs (metadata only: name, location as source, digest from the content hash, urn as a tag)."""
    mlflow.log_text(json.dumps({"datasets": list(records)}, indent=1, default=_json_default), "datasets.json")
    if not records:
        return
    from mlflow.data.meta_dataset import MetaDataset

    datasets = [MetaDataset(_dataset_source(r["location"]), name=r["name"], digest=str(r["content_hash"])[:32])
                for r in records]
    tags = [{"urn": str(r.get("urn") or ""), "content_hash": str(r["content_hash"])} for r in records]
    mlflow.log_inputs(datasets=datasets, contexts=[context] * len(records), tags_list=tags)


def _dataset_source(location: str):
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    try:
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        with warnings.catch_warnings():  # "can be interpreted in multiple ways" for local paths
            warnings.simplefilter("ignore", UserWarning)
            return resolve_dataset_source(str(location))
    except Exception:  # an unusual scheme: keep the location as a plain URL-like source
        return HTTPDatasetSource(url=str(location))


def log_onboarding(settings: "Settings", version: int, done: Iterable[Any]) -> str:
    """One run for an onboarding pass; `done` items have name, urn, how, metrics, location and file
    (`flows.onboarding.Onboarded`). Logs `onboarded.json`, metrics `onboard.<dataset>.<metric>`, the
    generated weight files under `weights/`; tags name the champion (and its LoggedModel id). The run id."""
    done = list(done)
    configure(settings)
    name = settings.tracking.model_name
    tags = {"hypernet.model_name": name, "hypernet.model_version": str(version),
            "hypernet.model_id": _logged_model_id(get_version(name, version).source) or ""}
    with mlflow.start_run(run_name="onboard", nested=mlflow.active_run() is not None, tags=tags) as run:
        mlflow.log_params({"model_name": name, "model_version": version})
        records = [{"name": d.name, "urn": d.urn, "how": d.how, "metrics": d.metrics, "location": d.location}
                   for d in done]
        mlflow.log_text(json.dumps({"model_version": version, "datasets": records}, indent=1,
                                   default=_json_default), "onboarded.json")
        metrics = {metric_name("onboard", d.name, k): float(v) for d in done for k, v in (d.metrics or {}).items()
                   if _finite(v)}
        mlflow.log_metrics(metrics | {"onboard.n_datasets": float(len(done))})
        for d in done:
            if getattr(d, "file", None):
                mlflow.log_artifact(str(d.file), artifact_path="weights")
    return run.info.run_id


# ---- data fingerprints ---------------------------------------------------------------------------------
def content_hash(df: pd.DataFrame) -> str:
    """sha256 (hex) of a table's content: column names, dtypes and values in row order (not the index)."""
    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)
