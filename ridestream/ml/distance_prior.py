"""The zone-pair distance prior: what a model reads when a ride's own distance is unknown.

Learned at training from the rides whose distance is known, logged with every model version that
reads it (``distance_prior.json``), applied inside ``LoadedModel.predict``, so training, batch
scoring, the predictors and the gateway fill ``pair_distance`` and ``distance_estimate`` alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from ridestream.ml.features import COLUMN, FEATURES, ZONE_COUNT, columns, zone_tables

PRIOR_MIN_RIDES = 3  # a zone pair with fewer known distances falls back to its borough pair


@cache
def _prior_plan(names: tuple[str, ...]) -> tuple[np.ndarray, int, int]:
    """A model's columns, and where among them the two prior columns go (-1: not read)."""
    at = {name: i for i, name in enumerate(names)}
    return columns(names), at.get("pair_distance", -1), at.get("distance_estimate", -1)


@dataclass(frozen=True)
class DistancePrior:
    """The typical (median) distance of every zone pair, learned from training rides whose
    distance is known; pairs seen fewer than ``PRIOR_MIN_RIDES`` times take their borough pair's
    median, and pairs of unknown boroughs stay unknown. Saved with every model that reads it."""

    zone_pairs: np.ndarray = field(repr=False)  # (ZONE_COUNT + 1)² medians, NaN: too few rides
    borough_pairs: np.ndarray = field(repr=False)  # boroughs² medians, NaN: never seen
    miles: np.ndarray = field(init=False, repr=False)  # the lookup table: zone pair, else borough

    def __post_init__(self) -> None:
        borough, _, _, _ = zone_tables()
        known = ~np.isnan(borough)
        code = np.where(known, borough, 0).astype(np.int64)
        fallback = self.borough_pairs[np.ix_(code, code)]
        fallback[~known, :] = fallback[:, ~known] = np.nan
        miles = np.where(np.isnan(self.zone_pairs), fallback, self.zone_pairs)
        miles[0, :] = miles[:, 0] = np.nan  # index 0 stands for an unknown zone
        object.__setattr__(self, "miles", miles)

    @classmethod
    def learn(cls, features: np.ndarray) -> DistancePrior:
        """Learn from a training feature matrix (its zones and known distances)."""
        borough, _, _, names = zone_tables()
        pu, do = features[:, COLUMN["pickup_zone"]], features[:, COLUMN["dropoff_zone"]]
        distance = features[:, COLUMN["trip_distance"]]
        known = ~(np.isnan(pu) | np.isnan(do) | np.isnan(distance))
        rides = pd.DataFrame(
            {"pu": pu[known].astype(np.int64), "do": do[known].astype(np.int64),
             "miles": distance[known]}
        )  # fmt: skip
        zone_pairs = np.full((ZONE_COUNT + 1, ZONE_COUNT + 1), np.nan)
        pairs = rides.groupby(["pu", "do"])["miles"].agg(["median", "size"])
        pairs = pairs[pairs["size"] >= PRIOR_MIN_RIDES]
        zone_pairs[pairs.index.get_level_values(0), pairs.index.get_level_values(1)] = pairs[
            "median"
        ]
        borough_pairs = np.full((len(names), len(names)), np.nan)
        rides["pu_b"], rides["do_b"] = borough[rides["pu"]], borough[rides["do"]]
        by_borough = rides.dropna().groupby(["pu_b", "do_b"])["miles"].median()
        codes = by_borough.index
        borough_pairs[
            codes.get_level_values(0).astype(np.int64), codes.get_level_values(1).astype(np.int64)
        ] = by_borough.to_numpy()
        return cls(zone_pairs, borough_pairs)

    def pair_miles(self, features: np.ndarray) -> np.ndarray:
        """The typical distance of each ride's zone pair (NaN where unknown)."""
        if len(features) == 1:
            return np.array([self._one_pair(features[0])])
        # fmax maps an unknown (NaN) zone to 0, the table's row and column of unknowns.
        pu = np.fmax(features[:, COLUMN["pickup_zone"]], 0.0).astype(np.intp)
        do = np.fmax(features[:, COLUMN["dropoff_zone"]], 0.0).astype(np.intp)
        return np.asarray(self.miles[pu, do])

    def select(
        self, features: np.ndarray, names: tuple[str, ...], pair: np.ndarray | None = None
    ) -> np.ndarray:
        """``select(self.apply(features), names)`` in one copy of only those columns (a model's
        per-call cost: services predict batches of a few rides too). ``pair``: the rides'
        :meth:`pair_miles`, when the caller already has them."""
        positions, pair_at, estimate_at = _prior_plan(names)
        if len(features) == 1:
            return self._select_one(features[0], positions, pair_at, estimate_at, pair)
        out = features[:, positions]  # fancy indexing: always a fresh C-ordered copy
        if pair_at >= 0 or estimate_at >= 0:
            pair = self.pair_miles(features) if pair is None else pair
            if pair_at >= 0:
                out[:, pair_at] = pair
            if estimate_at >= 0:
                distance = features[:, COLUMN["trip_distance"]]
                out[:, estimate_at] = np.where(np.isnan(distance), pair, distance)
        return out

    def _one_pair(self, row: np.ndarray) -> float:
        pu, do = row[COLUMN["pickup_zone"]], row[COLUMN["dropoff_zone"]]
        # A NaN zone compares false: index 0, the table's row and column of unknowns.
        return float(self.miles[int(pu) if pu > 0 else 0, int(do) if do > 0 else 0])

    def _select_one(
        self,
        row: np.ndarray,
        positions: np.ndarray,
        pair_at: int,
        estimate_at: int,
        pair: np.ndarray | None,
    ) -> np.ndarray:
        """:meth:`select` of a single ride in scalars: the gateway and a quiet stream predict one
        ride per call, where each vectorised numpy step costs more than the arithmetic."""
        out = row[positions]
        if pair_at >= 0 or estimate_at >= 0:
            miles = self._one_pair(row) if pair is None else float(pair[0])
            if pair_at >= 0:
                out[pair_at] = miles
            if estimate_at >= 0:
                distance = row[COLUMN["trip_distance"]]
                out[estimate_at] = miles if np.isnan(distance) else distance
        one: np.ndarray = out.reshape(1, -1)
        return one

    def apply(self, features: np.ndarray) -> np.ndarray:
        """A copy of a feature matrix with ``pair_distance`` and ``distance_estimate`` filled."""
        return self.select(features, FEATURES)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the learned medians as ``[pickup, dropoff, miles]`` rows."""

        def rows(table: np.ndarray) -> list[list[float]]:
            a, b = np.nonzero(~np.isnan(table))
            return [[int(i), int(j), float(table[i, j])] for i, j in zip(a, b, strict=True)]

        return {
            "min_rides": PRIOR_MIN_RIDES,
            "boroughs": list(zone_tables()[3]),
            "zone_pairs": rows(self.zone_pairs),
            "borough_pairs": rows(self.borough_pairs),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DistancePrior:
        """The inverse of :meth:`to_dict`."""
        if list(data["boroughs"]) != list(zone_tables()[3]):
            raise ValueError("the prior was learned with another zone lookup's boroughs")

        def table(rows: Any, size: int) -> np.ndarray:
            out = np.full((size, size), np.nan)
            values = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
            out[values[:, 0].astype(np.int64), values[:, 1].astype(np.int64)] = values[:, 2]
            return out

        return cls(
            table(data["zone_pairs"], ZONE_COUNT + 1),
            table(data["borough_pairs"], len(data["boroughs"])),
        )
