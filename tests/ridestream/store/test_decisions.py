"""The decision store on a real SQLite file: idempotent writes, the join, evaluation, the outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from ridestream.clock import to_ms
from ridestream.store.decisions import DecisionStore
from ridestream.store.tables import StoreError
from tests.store_rows import actual, partial_decision, prediction


def test_redelivered_predictions_and_completions_change_nothing(store: DecisionStore) -> None:
    rows = [prediction("a", "duration", 10.0), prediction("a", "cost", 20.0)]
    with store.begin() as conn:
        store.add_predictions(conn, rows)
        store.add_actuals(conn, [actual("a", 11.0, 19.0, 2.0)])
    with store.begin() as conn:
        store.add_predictions(conn, [{**rows[0], "value": 99.0}])  # a redelivery, even altered
        store.add_actuals(conn, [actual("a", 50.0, 50.0, 5.0)])
    ride = store.ride("a")
    assert ride is not None
    assert sorted((p.target, p.value) for p in ride.predictions) == [
        ("cost", 20.0),
        ("duration", 10.0),
    ]
    assert ride.actual == {"duration": 11.0, "cost": 19.0, "tip": 2.0}
    assert ride.status == "pending"
    assert store.ride("unknown") is None


def test_a_ride_is_decided_once_and_the_earliest_champion_prediction_wins(
    store: DecisionStore,
) -> None:
    with store.begin() as conn:
        store.add_predictions(
            conn,
            [
                prediction("a", "duration", 12.0, version="2", predicted_at_ms=2_000),
                prediction("a", "duration", 10.0, version="1", predicted_at_ms=1_000),
                prediction("a", "duration", 30.0, version="3", role="challenger"),
            ],
        )
        store.open_joins(conn, {"a": (0, 500)}, at_ms=10_000)
        store.open_joins(conn, {"a": (0, 500)}, at_ms=99_000)  # the join keeps its first arrival
        assert list(store.champion_predictions(conn, ["a", "b"], pending_only=True)) == ["a"]
        assert store.expired(conn, before_ms=10_000, partitions=[0]) == ["a"]
        assert store.expired(conn, before_ms=9_999, partitions=[0]) == []
        assert store.expired(conn, before_ms=10_000, partitions=[1]) == []
        chosen = store.champion_predictions(conn, ["a"])
        assert chosen["a"]["duration"].model_version == "1"
        first = partial_decision("a", "ride-duration", datetime(2023, 2, 1, 8, 0, 1, tzinfo=UTC))
        assert store.record_decisions(conn, [first]) == 1
        later = first.model_copy(update={"quote": 1.0})
        assert store.record_decisions(conn, [later]) == 0
        assert store.champion_predictions(conn, ["a"], pending_only=True) == {}  # decided
        assert list(store.champion_predictions(conn, ["a"])) == ["a"]
        # What a replica that takes partition 0 over reads, and the checks behind its memory.
        store.add_predictions(conn, [prediction("b", "cost", 20.0)])
        store.open_joins(conn, {"b": (0, 500)}, at_ms=10_000)
        assert list(store.pending_champions(conn, [0])) == ["b"]
        assert store.pending_champions(conn, [1]) == {}
        assert store.still_pending(conn, ["a", "b", "unknown"]) == {"b"}
        assert store.decided_at(conn, ["a", "b", "unknown"]) == {"a": to_ms(first.decided_at)}
    ride = store.ride("a")
    assert ride is not None
    assert ride.status == "decided"
    assert ride.decision == first


def test_evaluation_matches_an_offline_computation(store: DecisionStore) -> None:
    rng = np.random.default_rng(7)
    actual_duration = rng.uniform(3, 40, 300)
    champion = actual_duration + rng.normal(0, 3, 300)
    challenger = actual_duration + rng.normal(0, 2, 300)
    with store.begin() as conn:
        for i in range(300):
            ride = f"r{i:03d}"
            # Completion first for half the rides, predictions first for the other half.
            if i % 2:
                store.add_actuals(conn, [actual(ride, actual_duration[i], 10.0, 1.0)])
            store.add_predictions(
                conn,
                [
                    prediction(ride, "duration", champion[i]),
                    prediction(ride, "duration", challenger[i], version="2", role="challenger"),
                ],
            )
            if not i % 2:
                store.add_actuals(conn, [actual(ride, actual_duration[i], 10.0, 1.0)])
            store.evaluate(conn, [ride], at_ms=10_000 + i)
        store.evaluate(conn, [f"r{i:03d}" for i in range(300)], at_ms=99_999)  # again: no change
    table = store.evaluation().set_index("model_version")
    for version, predicted in (("1", champion), ("2", challenger)):
        error = predicted - actual_duration
        assert table.loc[version, "count"] == 300
        assert table.loc[version, "mae"] == pytest.approx(np.abs(error).mean())
        assert table.loc[version, "rmse"] == pytest.approx(np.sqrt((error**2).mean()))
    window = store.evaluation(window_rides=50).set_index("model_version")
    last = slice(250, 300)
    assert window.loc["1", "count"] == 50
    assert window.loc["1", "mae"] == pytest.approx(
        np.abs(champion[last] - actual_duration[last]).mean()
    )
    assert store.counts()["evaluated"] == 600


def test_the_outbox_claims_settles_and_resolves_an_interrupted_claim(store: DecisionStore) -> None:
    decisions = []
    with store.begin() as conn:
        for ride, partition in (("a", 0), ("b", 0), ("c", 1)):
            store.add_predictions(conn, [prediction(ride, "duration", 10.0)])
            store.open_joins(conn, {ride: (partition, 500)}, at_ms=1_000)
            decisions.append(partial_decision(ride, "m", datetime(2023, 2, 1, tzinfo=UTC)))
        store.record_decisions(conn, decisions)
        claimed = store.claim_unpublished(conn, "i0", "t1", [0], {0: 5, 1: 7})
    assert [d.ride_id for d in claimed] == ["a", "b"]  # partition 1 is another replica's
    assert store.in_flight("i0") == ("t1", {0: 5, 1: 7})
    # A crash before the confirmation: the recovery found only "a" on the topic.
    store.settle("i0", "t1", published=["a"])
    assert store.in_flight("i0") is None
    with store.begin() as conn:
        again = store.claim_unpublished(conn, "i0", "t2", [0, 1], {0: 6, 1: 7})
    assert [d.ride_id for d in again] == ["b", "c"]
    store.settle("i0", "t2")
    with store.begin() as conn:
        assert store.claim_unpublished(conn, "i0", "t3", [0, 1], {}) == []
    assert store.counts()["unpublished"] == 0


def test_the_retraining_cooldown_is_remembered(store: DecisionStore) -> None:
    assert store.last_retrain_ms() is None
    store.record_retrain(5_000, "drift", None)
    store.record_retrain(7_000, "online error", "exec-1")
    assert store.last_retrain_ms() == 7_000


def test_an_unsupported_database_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="unsupported store 'mysql'"):
        DecisionStore("mysql://u:p@127.0.0.1/db")


def test_a_store_of_another_table_layout_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # what an earlier layout left: tables, no layout version
        old.execute("CREATE TABLE rides (ride_id TEXT PRIMARY KEY)")
    with pytest.raises(StoreError, match="has table layout unknown, this ridestream needs 1"):
        DecisionStore(f"sqlite:///{path}")
    DecisionStore(f"sqlite:///{tmp_path / 'new.db'}").close()
    DecisionStore(f"sqlite:///{tmp_path / 'new.db'}").close()  # and reopening a current one works
