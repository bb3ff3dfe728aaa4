"""The run's figures: PNG files of the expected size, readable at 200 datasets, colours that mean something."""

import struct

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from flows.figures import (BARS_SIZE, DPI, HEATMAP_SIZE, NEGATIVE, POSITIVE, gain_bar_chart, interference_heatmap,
                           spectral_order)
from hypernet_core.interference import InterferenceResult, summarise


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])  # IHDR width, height


def _share_of_colour(path, colour: str) -> float:
    rgb = imread(path)[..., :3]
    return float((np.abs(rgb - np.array(to_rgb(colour))).max(-1) < 0.02).mean())


def _result(matrix, names):
    mean, neg, conflicts = summarise(matrix, names)
    return InterferenceResult(matrix, names, mean, neg, conflicts, 0.1)


def _two_camps(n, seed=0):
    """Datasets in two camps (agree inside a camp, conflict across), listed in shuffled order."""
    g = torch.Generator().manual_seed(seed)
    camp = torch.randperm(n, generator=g) % 2
    sign = camp * 2.0 - 1
    m = (0.6 * sign[:, None] * sign[None, :] + 0.1 * torch.randn(n, n, generator=g)).clamp(-1, 1)
    m = (m + m.T) / 2
    m.fill_diagonal_(1.0)
    return m, camp


@pytest.mark.parametrize("n", [6, 200])
def test_interference_heatmap_png(tmp_path, n):
    m, _ = _two_camps(n)
    if n == 6:
        m[5, :] = m[:, 5] = float("nan")  # a dataset without rows
    path = interference_heatmap(_result(m, [f"dataset_{i:03d}" for i in range(n)]), tmp_path / "sub" / "heat.png")
    assert path.exists() and path.stat().st_size > 5_000
    assert _png_size(path) == (round(HEATMAP_SIZE[0] * DPI), round(HEATMAP_SIZE[1] * DPI))


def test_spectral_order_puts_each_camp_together():
    m, camp = _two_camps(40, seed=1)
    ordered = camp[torch.as_tensor(spectral_order(m.numpy()))]
    assert int((ordered[1:] != ordered[:-1]).sum()) == 1  # one boundary between the camps


def test_gain_bar_chart_png_with_gains_and_losses(tmp_path, n=200):
    rng = np.random.default_rng(0)
    names = [f"ds{i:03d}" for i in range(n)]
    pooled = {k: float(v) for k, v in zip(names, rng.uniform(0.2, 0.6, n))}
    model = {k: v + float(rng.normal(0.1, 0.15)) for k, v in pooled.items()}
    model["only_in_model"], pooled["nan"], model["nan"] = 0.9, float("nan"), 0.5
    path = gain_bar_chart(model, pooled, tmp_path / "gain.png", metric="R²")
    assert path.stat().st_size > 5_000
    width, height = _png_size(path)
    assert width / height == pytest.approx(BARS_SIZE[0] / BARS_SIZE[1], rel=0.01)
    assert _share_of_colour(path, POSITIVE) > 0.005 and _share_of_colour(path, NEGATIVE) > 0.001


def test_gain_bar_chart_without_losses_has_no_loss_colour(tmp_path):
    names = [f"ds{i}" for i in range(30)]
    path = gain_bar_chart({n: 0.9 for n in names}, {n: 0.5 for n in names}, tmp_path / "gain.png")
    assert _share_of_colour(path, POSITIVE) > 0.01 and _share_of_colour(path, NEGATIVE) == 0.0
