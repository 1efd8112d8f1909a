"""The open joins in memory against a real store: they hold what the store holds, choose as it
chooses, and change only when told a store transaction committed."""

from __future__ import annotations

import itertools
from typing import Any

from decision_service.joins import PendingJoins
from ridestream.clock import instant
from ridestream.store.decisions import DecisionStore
from tests.store_rows import partial_decision, prediction

WINDOW_MS = 10_000


def stored(
    store: DecisionStore, rows: list[dict[str, Any]], partition: int, at_ms: int = 0
) -> None:
    """Predictions written and their joins opened, as the service does in a batch."""
    with store.begin() as conn:
        store.add_predictions(conn, rows)
        store.open_joins(conn, {r["ride_id"]: (partition, 500) for r in rows}, at_ms)


def test_a_replica_taking_partitions_over_knows_their_pending_rides(store: DecisionStore) -> None:
    stored(store, [prediction("r1", "duration", 10.0), prediction("r1", "cost", 20.0)], 0)
    stored(store, [prediction("r2", "duration", 7.0)], 1)
    joins = PendingJoins(store, WINDOW_MS)
    with store.begin() as conn:
        joins.hold(conn, [0], at_ms=1)
    assert len(joins) == 1
    joined = joins.join([prediction("r1", "tip", 3.0)], [0])
    assert {t: p.value for t, p in joined["r1"].items()} == {
        "duration": 10.0,
        "cost": 20.0,
        "tip": 3.0,
    }
    # Nothing changes until the store transaction commits: the same batch again finds the same.
    assert joins.join([prediction("r1", "tip", 3.0)], [0]) == joined
    joins.committed(joined, ["r1"], at_ms=2)
    assert len(joins) == 0
    with store.begin() as conn:
        joins.hold(conn, [1], at_ms=3)  # partition 0 given away, 1 taken over
    assert joins.join([prediction("r2", "cost", 9.0)], [1])["r2"].keys() == {"duration", "cost"}


def test_memory_chooses_the_prediction_the_store_would_in_any_arrival_order(
    store: DecisionStore,
) -> None:
    rows = [
        prediction("r1", "duration", 12.0, version="2", predicted_at_ms=900),
        prediction("r1", "duration", 11.0, version="1", predicted_at_ms=1_000),
        prediction("r1", "duration", 13.0, version="3", predicted_at_ms=900),
        prediction("r1", "cost", 20.0),
        prediction("r1", "tip", 2.0),
        prediction("r1", "duration", 1.0, role="challenger", predicted_at_ms=1),
        {
            **prediction("r1", "duration", 2.0, predicted_at_ms=1),
            "model_name": "ride-duration-simple",
        },
    ]
    stored(store, rows, 0)
    with store.begin() as conn:
        expected = store.champion_predictions(conn, ["r1"])["r1"]
    assert expected["duration"].model_version == "2"
    for order in itertools.permutations(rows):
        # Memory alone (partition 1 holds nothing in the store), over two batches.
        joins = PendingJoins(store, WINDOW_MS)
        with store.begin() as conn:
            joins.hold(conn, [1], at_ms=1)
        first, rest = list(order[:3]), list(order[3:])
        joins.committed(joins.join(first, [1] * len(first)), [], at_ms=1)
        assert joins.join(rest, [1] * len(rest))["r1"] == expected


def test_a_ride_decided_elsewhere_is_let_go_and_a_pending_one_kept(store: DecisionStore) -> None:
    stored(store, [prediction("r1", "duration", 10.0), prediction("r2", "duration", 7.0)], 0)
    joins = PendingJoins(store, WINDOW_MS)
    with store.begin() as conn:
        joins.hold(conn, [0], at_ms=0)
        store.record_decisions(conn, [partial_decision("r1", "ride-duration", instant(5))])
    with store.begin() as conn:
        joins.tidy(conn, at_ms=WINDOW_MS // 2)  # too soon to look
        assert len(joins) == 2
        joins.tidy(conn, at_ms=WINDOW_MS + 1)
    assert len(joins) == 1
    assert joins.join([prediction("r2", "cost", 1.0)], [0])["r2"].keys() == {"duration", "cost"}


def test_a_batch_of_a_partition_no_longer_held_is_not_kept(store: DecisionStore) -> None:
    joins = PendingJoins(store, WINDOW_MS)
    with store.begin() as conn:
        joins.hold(conn, [0], at_ms=0)
    joined = joins.join([prediction("r1", "duration", 10.0)], [0])
    with store.begin() as conn:
        joins.hold(conn, [1], at_ms=1)  # revoked while the batch was stored
    joins.committed(joined, [], at_ms=1)
    assert len(joins) == 0
