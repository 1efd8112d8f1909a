from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from producers.replay import COMPLETE, START, ReplaySummary, replay, schedule
from ridestream.contracts.events import RideCompleted, RideStarted
from ridestream.contracts.schemas import RIDE_COMPLETED, RIDE_STARTED
from ridestream.kafka.clients import make_admin
from ridestream.kafka.local import LocalKafka
from ridestream.kafka.topics import create_project_topics
from ridestream.ml.tlc import month_file
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.settings import Settings
from tests.conftest import local_kafka_settings, make_settings
from tests.helpers import consume_all

FEBRUARY = month_file("2023-02")


def rides(durations: list[float], gaps_s: list[float]) -> pd.DataFrame:
    pickups = pd.Timestamp("2023-02-01") + pd.to_timedelta(np.cumsum([0.0, *gaps_s]), unit="s")
    return pd.DataFrame({"pickup_time": pickups, "duration_minutes": durations})


def test_schedule_paces_starts_and_compresses_durations() -> None:
    frame = rides([10.0, 20.0, 5.0], gaps_s=[600.0, 600.0])  # 20 min of pickups
    due, kinds, index, speedup = schedule(frame, rate=1.0)
    assert speedup == pytest.approx(1200 / 2)  # 1200 s of pickups replayed in 2 s
    starts = {i: t for t, k, i in zip(due, kinds, index, strict=True) if k == START}
    ends = {i: t for t, k, i in zip(due, kinds, index, strict=True) if k == COMPLETE}
    assert starts == {0: 0.0, 1: 1.0, 2: 2.0}
    assert ends[1] == pytest.approx(1.0 + 20 * 60 / 600)
    assert list(due) == sorted(due)
    for ride in range(3):  # never a completion before its start
        assert list(index[kinds == START]).index(ride) <= list(index).index(ride)


def test_schedule_without_completions_or_rate() -> None:
    frame = rides([10.0, 20.0], gaps_s=[60.0])
    due, kinds, _, _ = schedule(frame, rate=0, completions=False)
    assert list(due) == [0.0, 0.0]
    assert set(kinds) == {START}


def check_topics(settings: Settings, expected_ids: list[str]) -> None:
    """Every ride exactly once on each topic, keyed by its id, decoding to a valid event."""
    for role, name, model in (
        ("started", RIDE_STARTED, RideStarted),
        ("completed", RIDE_COMPLETED, RideCompleted),
    ):
        messages = consume_all(settings, settings.topics.full(role), expected=len(expected_ids))
        serde = SingleObjectSerde(name)
        events = [model.parse(serde.decode(m.value())) for m in messages]
        counts = Counter(m.key().decode() for m in messages)
        duplicates = [key for key, n in counts.items() if n > 1]
        assert duplicates == [], f"{role}: duplicated rides {duplicates[:5]}"
        assert sorted(counts) == expected_ids, f"{role}: {len(counts)} of {len(expected_ids)} rides"
        assert all(
            event.ride_id == m.key().decode() for event, m in zip(events, messages, strict=True)
        )


@pytest.mark.kafka
def test_ten_thousand_real_rides_arrive_exactly_once(kafka_settings: Settings) -> None:
    summary = replay(
        kafka_settings, FEBRUARY, rate=0, limit=10_000, id_prefix="feb-", progress=False
    )
    assert (summary.rides_started, summary.rides_completed) == (10_000, 10_000)
    assert (summary.invalid_started, summary.invalid_completed) == (0, 0)
    check_topics(kafka_settings, [f"feb-{i:07d}" for i in range(10_000)])


@pytest.mark.kafka
def test_a_paced_replay_sends_one_batch_per_tick_at_most(
    kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delivery reports wake the loop every few milliseconds; a batch still waits for its tick
    (each batch costs milliseconds of validation and encoding whatever its size)."""
    from producers.publisher import RidePublisher

    batches: list[int] = []
    publish = RidePublisher.publish_started_batch

    def counted(self: RidePublisher, frame: pd.DataFrame) -> int:
        batches.append(len(frame))
        return publish(self, frame)

    monkeypatch.setattr(RidePublisher, "publish_started_batch", counted)
    summary = replay(
        kafka_settings, FEBRUARY, rate=2000, limit=2000, completions=False, id_prefix="tick-",
        progress=False, tick_s=0.1,
    )  # fmt: skip
    assert summary.rides_started == sum(batches) == 2000
    # One second of rides in 0.1 s ticks: about ten batches (a slow tick may hold a few more).
    assert len(batches) <= 13
    assert summary.elapsed_s < 3


@pytest.mark.kafka
@pytest.mark.slow
def test_a_broker_killed_and_restarted_during_a_replay_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    broker = LocalKafka(local_kafka_settings(tmp_path / "broker"))
    broker.start()
    try:
        # Long enough for the outage: queued messages wait for the broker to come back.
        settings = make_settings(broker.bootstrap, delivery_timeout_ms=120_000)
        create_project_topics(settings, make_admin(settings))
        outcome: dict[str, ReplaySummary | BaseException] = {}

        def run() -> None:
            try:
                outcome["summary"] = replay(
                    settings, FEBRUARY, rate=2000, limit=10_000, id_prefix="k-", progress=False
                )
            except BaseException as exc:
                outcome["error"] = exc

        replaying = threading.Thread(target=run)
        replaying.start()
        time.sleep(1.5)  # well into the 5 s replay
        assert replaying.is_alive()
        broker.kill()
        time.sleep(1.0)
        broker.restart_after_crash()
        replaying.join(timeout=180)
        assert "error" not in outcome, outcome.get("error")
        summary = outcome["summary"]
        assert isinstance(summary, ReplaySummary)
        assert (summary.rides_started, summary.rides_completed) == (10_000, 10_000)
        check_topics(settings, [f"k-{i:07d}" for i in range(10_000)])
    finally:
        broker.stop()


@pytest.mark.kafka
def test_rows_the_contract_refuses_are_skipped_counted_and_the_rest_published(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    raw = pd.read_parquet(FEBRUARY).head(300)
    raw.loc[raw.index[10], "payment_type"] = 9  # breaks RideStarted's 0-6: the ride is skipped
    raw.loc[raw.index[20], "tip_amount"] = -1.0  # breaks RideCompleted: only the completion is
    raw.loc[raw.index[30:40], "trip_distance"] = 0.0  # no estimate: published like any ride
    raw.loc[raw.index[40], "trip_distance"] = 25_000.0  # an absurd estimate: published too
    raw.loc[raw.index[50], "lpep_pickup_datetime"] = pd.Timestamp("2009-01-01 20:21:27")
    raw.loc[raw.index[50], "lpep_dropoff_datetime"] = pd.Timestamp("2009-01-01 20:41:27")
    month = tmp_path / "green_tripdata_2023-02.parquet"
    raw.to_parquet(month)
    summary = replay(kafka_settings, month, rate=0, id_prefix="p-", progress=False)
    assert (summary.invalid_started, summary.invalid_completed) == (1, 1)
    assert (summary.rides_started, summary.rides_completed) == (299, 298)
    assert summary.month["rows"] == 300
    messages = consume_all(kafka_settings, kafka_settings.topics.full("started"), expected=299)
    assert len(messages) == 299
    distances = [
        SingleObjectSerde(RIDE_STARTED).decode(m.value())["trip_distance"] for m in messages
    ]
    assert distances.count(0.0) >= 10
    assert 25_000.0 in distances
    # Late reports (January pickups) and a 2009 pickup are published too, but do not set the clock:
    # its speed comes from the pickups inside the month.
    paced = replay(kafka_settings, month, rate=2000, id_prefix="q-", progress=False)
    pickups = raw["lpep_pickup_datetime"]
    in_month = pickups[(pickups >= "2023-02-01") & (pickups < "2023-03-01")]
    span = (in_month.max() - in_month.min()).total_seconds()
    assert paced.speedup == pytest.approx(span / (298 / 2000), rel=0.01)


def test_pickups_without_a_span_complete_right_after_they_start() -> None:
    frame = rides([10.0, 20.0], gaps_s=[0.0])  # two pickups at the same instant
    due, kinds, _index, speedup = schedule(frame, rate=100.0)
    assert speedup == float("inf")
    ends = due[kinds == COMPLETE]
    assert ends.max() <= 0.01 + 1e-9  # not 20 real minutes later
