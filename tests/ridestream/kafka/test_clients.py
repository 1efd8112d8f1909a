"""Batches from a real broker: what has arrived, lingering, and a full batch that does not wait."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer

from ridestream.kafka.clients import (
    AdaptiveLinger,
    Batches,
    consumer_config,
    next_batch,
    producer_config,
)
from ridestream.kafka.producer import ReliableProducer
from ridestream.settings import Settings

pytestmark = pytest.mark.kafka


def produce(settings: Settings, topic: str, count: int, start: int = 0) -> None:
    with ReliableProducer(producer_config(settings)) as producer:
        for i in range(start, start + count):
            producer.produce(topic, f"v{i}".encode(), key=f"r-{i}")


def subscribed(settings: Settings, topic: str) -> Consumer:
    consumer = Consumer(consumer_config(settings, f"next-batch-{time.monotonic_ns()}"))
    consumer.subscribe([topic])
    return consumer


def drain(consumer: Consumer, count: int) -> list[object]:
    """The first batch: the group joins and the messages already there arrive."""
    messages: list[object] = []
    deadline = time.monotonic() + 30
    while len(messages) < count and time.monotonic() < deadline:
        messages += next_batch(consumer, count - len(messages), 0.5)
    return messages


def test_a_batch_takes_what_has_arrived_and_lingers_for_more(kafka_settings: Settings) -> None:
    topic = kafka_settings.topics.full("started")
    produce(kafka_settings, topic, 5)
    consumer = subscribed(kafka_settings, topic)
    try:
        assert len(drain(consumer, 5)) == 5
        # Without a linger, a message is taken alone the moment it is there.
        produce(kafka_settings, topic, 1, start=5)
        assert len(next_batch(consumer, 100, 5.0)) == 1

        # With one, the batch keeps gathering until its instant: what comes meanwhile joins it.
        later = threading.Timer(0.3, produce, (kafka_settings, topic, 3, 6))
        later.start()
        started = time.monotonic()
        produce(kafka_settings, topic, 1, start=9)
        batch = next_batch(consumer, 100, 5.0, not_before=started + 2.0)
        later.join()
        assert len(batch) == 4
        assert time.monotonic() - started >= 1.9
    finally:
        consumer.close()


def test_a_full_batch_does_not_linger(kafka_settings: Settings) -> None:
    topic = kafka_settings.topics.full("started")
    produce(kafka_settings, topic, 20)
    consumer = subscribed(kafka_settings, topic)
    try:
        started = time.monotonic()
        # Lingering starts at once (the group is still forming) and ends when the batch is full.
        batch = next_batch(consumer, 10, 5.0, not_before=started + 60.0)
        assert len(batch) == 10
        assert time.monotonic() - started < 30.0  # joined and fetched, not the minute's linger
    finally:
        consumer.close()


def test_the_linger_follows_the_work_within_its_bound() -> None:
    linger = AdaptiveLinger(upper_s=0.1)
    assert linger.gap_s == 0.0  # nothing measured yet: no wait
    for _ in range(50):
        linger.worked(0.005)  # quick cycles: a ride waits milliseconds, not the bound
    assert linger.gap_s == pytest.approx(0.010, rel=1e-3)
    for _ in range(50):
        linger.worked(0.030)  # bigger batches, longer cycles: a longer linger buys fewer of them
    assert linger.gap_s == pytest.approx(0.060, rel=1e-3)
    for _ in range(50):
        linger.worked(0.400)  # cycles past the bound: the gap is the bound, shorter than the work
    assert linger.gap_s == 0.1
    assert AdaptiveLinger(upper_s=0.0).gap_s == 0.0  # 0 turns the linger off


def test_a_loop_with_quick_cycles_takes_a_lone_message_without_waiting_out_the_bound(
    kafka_settings: Settings,
) -> None:
    topic = kafka_settings.topics.full("started")
    produce(kafka_settings, topic, 5)
    consumer = subscribed(kafka_settings, topic)
    try:
        assert len(drain(consumer, 5)) == 5
        batches = Batches(consumer, 100, 5.0, linger_s=30.0)
        produce(kafka_settings, topic, 1, start=5)
        assert len(batches.next()) == 1
        # The loop asks again at once: its cycles cost nothing, so lingering would buy nothing.
        produce(kafka_settings, topic, 1, start=6)
        asked = time.monotonic()
        assert len(batches.next()) == 1
        assert time.monotonic() - asked < 15.0  # not the 30 s bound
    finally:
        consumer.close()
