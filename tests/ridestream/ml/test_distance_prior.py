"""The zone-pair distance prior: learned from known distances, applied alone or in batches."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ridestream.ml.distance_prior import PRIOR_MIN_RIDES, DistancePrior
from ridestream.ml.features import build_features, zone_tables
from tests.ridestream.ml.test_features import column, february, ride

__all__ = ["february"]  # the fixture, shared with the feature tests


def test_the_prior_fills_in_the_zone_pairs_typical_distance(february: pd.DataFrame) -> None:
    features = build_features(february)
    prior = DistancePrior.learn(features)
    known = february[(february["trip_distance"] > 0) & (february["trip_distance"] <= 100)]
    pair = known[(known["pickup_zone"] == 74) & (known["dropoff_zone"] == 75)]["trip_distance"]
    assert len(pair) >= PRIOR_MIN_RIDES
    unknown = prior.apply(build_features(ride(pickup_zone=74, dropoff_zone=75, trip_distance=0)))
    assert column(unknown, "pair_distance")[0] == pytest.approx(pair.median())
    assert column(unknown, "distance_estimate")[0] == pytest.approx(pair.median())
    given = prior.apply(build_features(ride(pickup_zone=74, dropoff_zone=75, trip_distance=3.3)))
    assert column(given, "distance_estimate")[0] == 3.3  # a usable distance is the ride's own
    # A pair never seen takes its borough pair's median; an unknown zone stays unknown.
    borough, _, _, names = zone_tables()
    manhattan = np.flatnonzero(borough == names.index("Manhattan"))
    seen = set(zip(known["pickup_zone"], known["dropoff_zone"], strict=True))
    never = next((a, b) for a in manhattan for b in manhattan if (a, b) not in seen)
    rare = prior.apply(
        build_features(ride(pickup_zone=never[0], dropoff_zone=never[1], trip_distance=0))
    )
    manhattan_rides = known[
        np.isin(known["pickup_zone"], manhattan) & np.isin(known["dropoff_zone"], manhattan)
    ]
    assert column(rare, "pair_distance")[0] == pytest.approx(
        manhattan_rides["trip_distance"].median()
    )
    lost = prior.apply(build_features(ride(pickup_zone=999, trip_distance=0)))
    assert np.isnan(column(lost, "distance_estimate")[0])
    # It is applied to a copy, and survives its JSON form.
    assert np.isnan(column(features, "pair_distance")).all()
    restored = DistancePrior.from_dict(json.loads(json.dumps(prior.to_dict())))
    np.testing.assert_array_equal(restored.apply(features), prior.apply(features))


def test_the_prior_gives_one_ride_alone_what_it_gives_it_in_a_batch(
    february: pd.DataFrame,
) -> None:
    features = build_features(february)
    prior = DistancePrior.learn(features)
    # Rides with a distance, without one, and with unknown zones: the one-ride path is its own code.
    rides = np.vstack(
        [
            build_features(february.head(200)),
            build_features(ride(trip_distance=0.0)),
            build_features(ride(pickup_zone=999, trip_distance=0.0)),
        ]
    )
    names = ("trip_distance", "distance_estimate", "pickup_zone", "pair_distance")
    batch = prior.select(rides, names)
    pair = prior.pair_miles(rides)
    for i in range(len(rides)):
        one = rides[i : i + 1]
        np.testing.assert_array_equal(prior.select(one, names), batch[i : i + 1])
        np.testing.assert_array_equal(prior.select(one, names, pair[i : i + 1]), batch[i : i + 1])
        np.testing.assert_array_equal(prior.pair_miles(one), pair[i : i + 1])
    assert np.isnan(batch[:, 1]).any()  # some rides lean on the prior, the others do not
    assert not np.isnan(batch[:, 1]).all()
