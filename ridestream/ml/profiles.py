"""Feature reference profiles (logged with every model) and the population stability index.

A profile records, per feature, the bins of its training distribution and the share of rows in
each (numeric: decile edges; categorical: the most frequent categories plus "other"), and the share
missing. The PSI of a live window against it says how far the stream has drifted from what the
model learned: Σ (live − ref) · ln(live / ref) over the bins, with a small floor on empty bins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PSI_FLOOR = 1e-4
MAX_CATEGORIES = 60


def _numeric_profile(values: np.ndarray, bins: int) -> dict[str, Any]:
    present = values[~np.isnan(values)]
    edges = (
        np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
        if len(present)
        else np.array([])
    )
    return {
        "kind": "numeric",
        "edges": edges.tolist(),
        "frequencies": _numeric_shares(values, edges.tolist()),
    }


def _numeric_shares(values: np.ndarray, edges: list[float]) -> list[float]:
    present = values[~np.isnan(values)]
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    return [float(c) / max(len(values), 1) for c in counts]


def _categorical_profile(values: np.ndarray) -> dict[str, Any]:
    present = values[~np.isnan(values)]
    categories, counts = np.unique(present, return_counts=True)
    top = categories[np.argsort(-counts, kind="stable")][:MAX_CATEGORIES]
    categories_sorted = sorted(top.tolist())
    return {
        "kind": "categorical",
        "categories": categories_sorted,
        "frequencies": _categorical_shares(values, categories_sorted),
    }


def _categorical_shares(values: np.ndarray, categories: list[float]) -> list[float]:
    """Shares of each known category, then of every other present value."""
    present = values[~np.isnan(values)]
    total = max(len(values), 1)
    known = np.isin(present, categories)
    index = np.searchsorted(categories, present[known])
    counts = (
        np.bincount(index, minlength=len(categories))
        if len(categories)
        else np.array([], dtype=np.int64)
    )
    return [*(counts / total).tolist(), float((~known).sum() / total)]


def reference_profile(
    matrix: np.ndarray, names: tuple[str, ...], categorical: tuple[str, ...], bins: int = 10
) -> dict[str, Any]:
    """The profile of a feature matrix: per feature, bins, shares and the missing share."""
    features: dict[str, Any] = {}
    for i, name in enumerate(names):
        column = matrix[:, i]
        entry = (
            _categorical_profile(column) if name in categorical else _numeric_profile(column, bins)
        )
        entry["missing"] = float(np.isnan(column).mean()) if len(column) else 0.0
        features[name] = entry
    return {"rows": int(matrix.shape[0]), "features": features}


def shares(entry: dict[str, Any], values: np.ndarray) -> np.ndarray:
    """The shares of ``values`` in a profile entry's bins, missing last."""
    values = np.asarray(values, dtype=np.float64)
    binned = (
        _numeric_shares(values, entry["edges"])
        if entry["kind"] == "numeric"
        else _categorical_shares(values, entry["categories"])
    )
    missing = float(np.isnan(values).mean()) if len(values) else 0.0
    return np.array([*binned, missing])


def psi(entry: dict[str, Any], values: np.ndarray) -> float:
    """Population stability index of live ``values`` against one feature's reference entry."""
    reference = np.array([*entry["frequencies"], entry["missing"]])
    live = shares(entry, values)
    reference, live = np.maximum(reference, PSI_FLOOR), np.maximum(live, PSI_FLOOR)
    return float(np.sum((live - reference) * np.log(live / reference)))
