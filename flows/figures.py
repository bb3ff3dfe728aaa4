"""Figures for a run: the interference heatmap and per-dataset gains over the pooled baseline (PNG).

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global figure state), so they
work headless, in threads and in flows. Both stay readable at 200 datasets: names are shown only
up to `MAX_LABELS` datasets, and the order carries the structure (similar datasets next to each
other in the heatmap, gains sorted in the bar chart).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MAX_LABELS = 40
DPI = 120
HEATMAP_SIZE = (8.0, 7.0)   # inches; PNG pixels = size × DPI
BARS_SIZE = (10.0, 4.5)
POSITIVE, NEGATIVE = "#2a9d8f", "#e76f51"


def interference_heatmap(result, path: str | Path, order: bool = True) -> Path:
    """Heatmap of an `InterferenceResult` (cosines, red = conflict, blue = agreement).

    `order=True` sorts datasets by the leading eigenvector of the matrix, which puts datasets that
    pull the same way next to each other: blocks of blue and red become visible at any size."""
    m = np.asarray(result.matrix, dtype=np.float64)                               # (D, D)
    names = list(result.names)
    idx = spectral_order(m) if order else np.arange(len(names))
    m, names = m[np.ix_(idx, idx)], [names[i] for i in idx]

    fig = _figure(HEATMAP_SIZE)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(m), cmap="RdBu", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="gradient cosine")
    ax.set_title(f"Task interference: mean off-diagonal {result.mean_off_diagonal:.2f}, "
                 f"{result.negative_share:.0%} of pairs conflict", fontsize=10)
    _dataset_ticks(ax, names, both=True)
    return _save(fig, path)


def gain_bar_chart(per_dataset_model: dict[str, float], per_dataset_pooled: dict[str, float], path: str | Path,
                   metric: str = "metric", model_label: str = "hypernetwork") -> Path:
    """One bar per dataset: model minus pooled baseline, sorted from best to worst gain, green for a
    gain and red for a loss. Datasets missing from either side, or NaN, are left out."""
    gains = {n: per_dataset_model[n] - per_dataset_pooled[n] for n in per_dataset_model
             if n in per_dataset_pooled and _finite(per_dataset_model[n]) and _finite(per_dataset_pooled[n])}
    ranked = sorted(gains.items(), key=lambda kv: kv[1], reverse=True)
    names, values = [n for n, _ in ranked], np.array([v for _, v in ranked])

    fig = _figure(BARS_SIZE)
    ax = fig.add_subplot()
    ax.bar(np.arange(len(values)), values, width=0.85 if len(values) <= MAX_LABELS else 1.0,
           color=[POSITIVE if v >= 0 else NEGATIVE for v in values])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel(f"{metric}: {model_label} − pooled")
    better = int((values > 0).sum())
    mean = float(values.mean()) if len(values) else math.nan
    ax.set_title(f"Gain over the pooled model: {better} of {len(values)} datasets better, mean {mean:+.3f}",
                 fontsize=10)
    _dataset_ticks(ax, names, both=False)
    return _save(fig, path)


def spectral_order(m: np.ndarray) -> np.ndarray:
    """Indices sorting datasets by the leading eigenvector of the (NaN -> 0) symmetric matrix."""
    if len(m) < 3:
        return np.arange(len(m))
    clean = np.nan_to_num((m + m.T) / 2, nan=0.0)
    _, vectors = np.linalg.eigh(clean)
    return np.argsort(vectors[:, -1], kind="stable")


def _dataset_ticks(ax, names: list[str], both: bool) -> None:
    n = len(names)
    axes = [ax.xaxis, ax.yaxis] if both else [ax.xaxis]
    if n <= MAX_LABELS:
        size = 8 if n <= 20 else 6
        ax.set_xticks(range(n), names, rotation=90, fontsize=size)
        if both:
            ax.set_yticks(range(n), names, fontsize=size)
    else:
        for axis in axes:
            axis.set_ticks([])
        ax.set_xlabel(f"{n} datasets (names hidden above {MAX_LABELS})")
        if both:
            ax.set_ylabel(f"{n} datasets")


def _figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    """Fixed pixel size (no tight bounding box), so a figure is always size × DPI pixels."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


def fleet_figures(out_dir: Path, model, train_fleet, per_dataset: dict[str, float],
                  per_dataset_pooled: dict[str, float] | None, metric: str = "R²") -> dict:
    """Interference matrix of a trained hypernetwork (JSON + heatmap) and its per-dataset gains over
    the pooled model (bar chart). Returns the summary and the files written."""
    import json

    from hypernet_core.interference import interference_matrix

    out_dir.mkdir(parents=True, exist_ok=True)
    result = interference_matrix(model, train_fleet)
    summary = result.to_dict()
    files = {"heatmap": str(interference_heatmap(result, out_dir / "interference.png")),
             "matrix": str(out_dir / "interference.json")}
    (out_dir / "interference.json").write_text(json.dumps(summary))
    if per_dataset_pooled:
        files["gains"] = str(gain_bar_chart(per_dataset, per_dataset_pooled, out_dir / "gains_over_pooled.png",
                                            metric=metric))
    return {k: summary[k] for k in ("mean_off_diagonal", "negative_share", "top_conflicts", "seconds")} | files
