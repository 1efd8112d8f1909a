from __future__ import annotations

import asyncio
import time

import pytest

from ridestream.kafka.clients import producer_config
from ridestream.kafka.exceptions import DeliveryError, QueueFullError
from ridestream.kafka.producer import AsyncProducer, ReliableProducer
from ridestream.settings import Settings
from tests.conftest import free_port, make_settings
from tests.helpers import consume_all, keys


def dead_broker_settings(timeout_ms: int = 1500) -> Settings:
    # A loopback port nothing listens on: every delivery must fail, and say so.
    return make_settings(f"127.0.0.1:{free_port()}", delivery_timeout_ms=timeout_ms)


def test_a_failed_delivery_reaches_the_caller_on_flush() -> None:
    producer = ReliableProducer(producer_config(dead_broker_settings()))
    producer.produce("rides.started", b"x", key="r-1")
    with pytest.raises(DeliveryError, match=r"rides\.started.*r-1.*timed out"):
        producer.flush(10)
    assert producer.failed == 1
    assert producer.delivered == 0


def test_a_failed_delivery_is_raised_on_the_next_produce() -> None:
    producer = ReliableProducer(producer_config(dead_broker_settings()))
    producer.produce("rides.started", b"x", key="r-1")
    deadline = time.monotonic() + 10
    while producer.failed == 0 and time.monotonic() < deadline:
        producer.poll(0.2)
    with pytest.raises(DeliveryError):
        producer.produce("rides.started", b"y", key="r-2")


def test_a_full_queue_is_retried_a_bounded_number_of_times() -> None:
    config = producer_config(
        dead_broker_settings(timeout_ms=60_000), **{"queue.buffering.max.messages": 1}
    )
    producer = ReliableProducer(config, queue_full_retries=2, queue_full_wait_s=0.05)
    producer.produce("rides.started", b"x", key="r-1")
    with pytest.raises(QueueFullError, match="still full after 2 waits"):
        producer.produce("rides.started", b"y", key="r-2")


@pytest.mark.kafka
def test_acknowledged_messages_are_all_on_the_topic(kafka_settings: Settings) -> None:
    topic = kafka_settings.topics.full("started")
    with ReliableProducer(producer_config(kafka_settings)) as producer:
        for i in range(500):
            producer.produce(topic, f"v{i}".encode(), key=f"r-{i}")
    assert producer.delivered == 500
    assert sorted(keys(consume_all(kafka_settings, topic, expected=500))) == sorted(
        f"r-{i}" for i in range(500)
    )


@pytest.mark.kafka
def test_async_send_returns_the_broker_coordinates(kafka_settings: Settings) -> None:
    topic = kafka_settings.topics.full("started")

    async def send_some() -> list[int]:
        producer = AsyncProducer(producer_config(kafka_settings))
        try:
            messages = await asyncio.gather(
                *(producer.send(topic, b"v", f"k{i}") for i in range(20))
            )
        finally:
            producer.close()
        return [m.offset() for m in messages]

    offsets = asyncio.run(send_some())
    assert len(offsets) == 20
    assert all(offset >= 0 for offset in offsets)


def test_async_send_raises_the_delivery_failure() -> None:
    async def send() -> None:
        producer = AsyncProducer(producer_config(dead_broker_settings()))
        try:
            await producer.send("rides.started", b"v", "k")
        finally:
            producer._closing.set()

    with pytest.raises(DeliveryError, match="timed out"):
        asyncio.run(send())
