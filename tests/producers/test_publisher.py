from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import pandas as pd
import pytest

from producers.publisher import AsyncRidePublisher, RidePublisher
from producers.replay import STARTED_FIELDS
from ridestream.contracts.events import RideStarted
from ridestream.contracts.exceptions import InvalidEventError
from ridestream.contracts.schemas import RIDE_STARTED
from ridestream.kafka.exceptions import DeliveryError
from ridestream.kafka.topics import summarize_topics
from ridestream.ml.tlc import load_month, month_file
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.settings import Settings
from tests.conftest import free_port, make_settings
from tests.helpers import consume_all


def ride(ride_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "ride_id": ride_id,
        "pickup_time": datetime(2023, 2, 1, 8, 30),
        "pickup_zone": 74,
        "dropoff_zone": 75,
        "trip_distance": 1.2,
        **changes,
    }


@pytest.mark.kafka
def test_published_rides_arrive_keyed_by_ride_id_and_decode(kafka_settings: Settings) -> None:
    with RidePublisher(kafka_settings) as publisher:
        for i in range(100):
            publisher.publish_started(ride(f"r-{i}", passenger_count=i % 5))
    messages = consume_all(kafka_settings, kafka_settings.topics.full("started"), expected=100)
    serde = SingleObjectSerde(RIDE_STARTED)
    decoded = {m.key().decode(): RideStarted.parse(serde.decode(m.value())) for m in messages}
    assert len(messages) == 100
    assert sorted(decoded) == sorted(f"r-{i}" for i in range(100))
    assert all(event.ride_id == key for key, event in decoded.items())
    assert decoded["r-7"].passenger_count == 2


@pytest.mark.kafka
def test_an_invalid_ride_names_the_field_and_nothing_is_sent(kafka_settings: Settings) -> None:
    with RidePublisher(kafka_settings) as publisher:
        with pytest.raises(InvalidEventError) as raised:
            publisher.publish_started(ride("bad", trip_distance=-3.0))
        assert raised.value.field == "trip_distance"
        with pytest.raises(InvalidEventError, match="pickup_zone"):
            publisher.publish_started(ride("bad", pickup_zone=999))
        assert publisher.pending == 0
    summary = summarize_topics(kafka_settings, [kafka_settings.topics.full("started")])
    assert summary[0].messages == 0


def test_publishing_with_the_broker_down_fails_within_the_delivery_timeout() -> None:
    settings = make_settings(f"127.0.0.1:{free_port()}", delivery_timeout_ms=2000)
    publisher = RidePublisher(settings)
    publisher.publish_started(ride("r-1"))
    started = time.monotonic()
    with pytest.raises(
        DeliveryError, match=r"delivery to .*rides\.started failed \(key='r-1'\).*timed out"
    ):
        publisher.flush()
    # The error is the timeout the settings asked for, not an endless hang.
    assert time.monotonic() - started < 2.0 + 5


@pytest.mark.kafka
def test_the_async_publisher_returns_a_receipt(kafka_settings: Settings) -> None:
    async def publish() -> Any:
        publisher = AsyncRidePublisher(kafka_settings)
        try:
            return await publisher.publish_started(
                RideStarted.parse(ride("r-async", source="gateway", enhanced=True))
            )
        finally:
            publisher.close()

    receipt = asyncio.run(publish())
    assert receipt.topic == kafka_settings.topics.full("started")
    assert receipt.offset == 0
    [message] = consume_all(kafka_settings, receipt.topic, expected=1)
    event = SingleObjectSerde(RIDE_STARTED).decode(message.value())
    assert event["source"] == "gateway"
    assert event["enhanced"] is True


def test_the_async_publisher_validates_before_producing() -> None:
    async def publish() -> None:
        publisher = AsyncRidePublisher(
            make_settings(f"127.0.0.1:{free_port()}", delivery_timeout_ms=1000)
        )
        try:
            await publisher.publish_started(ride("r", passenger_count=40))
        finally:
            publisher.close(timeout_s=2)

    with pytest.raises(InvalidEventError, match="passenger_count"):
        asyncio.run(publish())


def february_frame(count: int) -> pd.DataFrame:
    rides, _ = load_month(month_file("2023-02"))
    frame = rides.iloc[:count][list(STARTED_FIELDS)].copy()
    frame.insert(0, "ride_id", [f"b-{i}" for i in range(count)])
    return frame


@pytest.mark.kafka
def test_a_batch_arrives_whole_and_decodes_to_its_rows(kafka_settings: Settings) -> None:
    frame = february_frame(2000)
    with RidePublisher(kafka_settings) as publisher:
        assert publisher.publish_started_batch(frame, source="gateway") == 2000
    messages = consume_all(kafka_settings, kafka_settings.topics.full("started"), expected=2000)
    serde = SingleObjectSerde(RIDE_STARTED)
    by_id = {m.key().decode(): RideStarted.parse(serde.decode(m.value())) for m in messages}
    assert len(messages) == 2000
    assert len(by_id) == 2000
    assert len({event.event_id for event in by_id.values()}) == 2000
    for row in frame.sample(200, random_state=1).itertuples():
        event = by_id[row.ride_id]
        assert event.source == "gateway"
        assert event.pickup_time == row.pickup_time.to_pydatetime()
        assert (event.pickup_zone, event.dropoff_zone, event.trip_distance) == (
            row.pickup_zone,
            row.dropoff_zone,
            row.trip_distance,
        )
        assert event.payment_type == (None if pd.isna(row.payment_type) else row.payment_type)


@pytest.mark.kafka
def test_a_batch_with_one_invalid_ride_sends_nothing(kafka_settings: Settings) -> None:
    frame = february_frame(500)
    frame.loc[321, "passenger_count"] = 40
    with RidePublisher(kafka_settings) as publisher:
        with pytest.raises(InvalidEventError, match=r"row 321, ride_id='b-321'") as raised:
            publisher.publish_started_batch(frame)
        assert raised.value.field == "passenger_count"
    summary = summarize_topics(kafka_settings, [kafka_settings.topics.full("started")])
    assert summary[0].messages == 0
