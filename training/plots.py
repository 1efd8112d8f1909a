"""The plots logged with every model version: importance, residuals, predicted vs actual."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers or CI

import matplotlib.pyplot as plt
import numpy as np


def importance_figure(booster: Any, title: str) -> Any:
    """Gain importance per feature, largest first."""
    gains = booster.feature_importance(importance_type="gain")
    names = np.array(booster.feature_name())
    order = np.argsort(gains)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.5))
    ax.barh(names[order], gains[order] / max(gains.sum(), 1e-12), color="#3b7dd8")
    ax.set_xlabel("share of total gain")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def residuals_figure(actual: np.ndarray, predicted: np.ndarray, title: str) -> Any:
    """Residuals against predictions, and their distribution."""
    residual = actual - predicted
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.scatter(predicted, residual, s=2, alpha=0.25, color="#3b7dd8")
    left.axhline(0, color="black", linewidth=0.8)
    left.set_xlabel("predicted")
    left.set_ylabel("actual − predicted")
    clip = np.quantile(np.abs(residual), 0.995)
    right.hist(np.clip(residual, -clip, clip), bins=80, color="#3b7dd8")
    right.set_xlabel("residual (clipped at the 99.5th percentile)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def predicted_vs_actual_figure(actual: np.ndarray, predicted: np.ndarray, title: str) -> Any:
    """Predicted against actual with the identity line."""
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.scatter(actual, predicted, s=2, alpha=0.25, color="#3b7dd8")
    top = float(np.quantile(np.concatenate([actual, predicted]), 0.999))
    ax.plot([0, top], [0, top], color="black", linewidth=0.8)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def close(fig: Any) -> None:
    """Free a figure's memory once it is logged."""
    plt.close(fig)
