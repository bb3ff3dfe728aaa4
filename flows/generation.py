"""`hypernet generate`: a saved hypernetwork + a new dataset's meta-features (+ rows) -> weights file."""

from __future__ import annotations

from pathlib import Path

from flows.fleet_io import read_local_table
from flows.tables import numeric_features
from hypernet_core import DatasetTable, FleetError
from hypernet_core.export import generate
from hypernet_core.io import load_model


def parse_meta(pairs: list[str]) -> dict[str, float | str]:
    """`["beds=120", "region=north"]` -> {"beds": 120.0, "region": "north"}."""
    out: dict[str, float | str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FleetError("<new dataset>", "meta", f"{item!r} is not KEY=VALUE", "write it like --meta beds=120")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


def generate_weights(settings, model_dir: Path, name: str, meta: list[str], rows: Path | None, target: str | None,
                     out: Path | None) -> Path:
    model, enc, _ = load_model(model_dir, device="cpu")
    table = None
    if rows is not None:
        if not target:
            raise FleetError(name, "target", "--rows was given without --target", "name the target column with --target")
        df = read_local_table(rows)
        features = numeric_features(df, name, [c for c in df.columns if c != target])
        table = DatasetTable(name, {f: v for f, v in features.items() if f in enc.features}, df[target].to_numpy(), {})
    generated = generate(model, enc, name, parse_meta(meta), rows=table, seed=settings.seed)
    out = out or settings.workspace / "weights" / f"{name}.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    generated.save(out)
    return out
