"""The exactly-once loop against a real broker, when its consumer or producer fails for good."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer

from ridestream.kafka import transactions
from ridestream.kafka.clients import consumer_config, producer_config
from ridestream.kafka.exceptions import ProducerFailedError
from ridestream.kafka.loop import ExactlyOnceLoop
from ridestream.kafka.loop_config import LoopConfig
from ridestream.kafka.producer import ReliableProducer
from ridestream.settings import Settings
from tests.helpers import consume_all

pytestmark = pytest.mark.kafka


class Echo:
    """Copies every input message to the output topic, in the loop's transactions."""

    def __init__(self, output: str) -> None:
        self.output = output

    def prepare(self, messages: list[Message]) -> list[bytes] | None:
        return [m.value() or b"" for m in messages] or None

    def publish(self, producer: Producer, batches: list[list[bytes]]) -> None:
        for values in batches:
            transactions.produce_all(producer, self.output, values, [None] * len(values))

    def committed(self, batches: list[list[bytes]], seconds: float) -> None:
        pass

    def aborted(self, reason: str) -> None:
        pass


def send(settings: Settings, topic: str, values: list[bytes]) -> None:
    with ReliableProducer(producer_config(settings)) as producer:
        producer.produce_many(topic, values, [None] * len(values))


@pytest.mark.cluster
def test_a_fenced_static_member_gets_a_new_consumer_and_nothing_is_lost_or_doubled(
    kafka_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = kafka_settings
    source, output = settings.topics.full("started"), settings.topics.full("predictions")
    group, instance = f"{settings.topics.prefix}echo", "echo-0"
    config = LoopConfig(
        batch_max_messages=100, batch_max_wait_s=0.1, batch_linger_s=0.0,
        retry_backoff_s=0.1, retry_backoff_max_s=1.0, transaction_timeout_ms=10_000,
        consumer_overrides={"group.instance.id": instance},
    )  # fmt: skip
    loop: ExactlyOnceLoop[Any] = ExactlyOnceLoop(
        settings, Echo(output), config, group=group, transactional_id=f"{group}.0",
        topics=[source], name="echo",
    )  # fmt: skip
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    caplog.set_level(logging.WARNING, logger="ridestream.kafka.loop")
    runner.start()
    try:
        send(settings, source, [b"a%d" % i for i in range(200)])
        assert len(consume_all(settings, output, expected=200, idle_timeout_s=30)) == 200

        # Another member with the same static id takes its place: the loop's consumer is fenced,
        # a fatal error for that consumer instance.
        usurper = Consumer(consumer_config(settings, group, **{"group.instance.id": instance}))
        usurper.subscribe([source])
        deadline = time.monotonic() + 30
        while "replacing it" not in caplog.text:
            usurper.poll(0.2)
            assert time.monotonic() < deadline, "the loop's consumer was never fenced"
        usurper.close()

        send(settings, source, [b"b%d" % i for i in range(200)])
        copied = consume_all(settings, output, expected=400, idle_timeout_s=30)
        assert runner.is_alive()
    finally:
        stop.set()
        runner.join(timeout=60)
    values = sorted(m.value() or b"" for m in copied)
    assert values == sorted([b"a%d" % i for i in range(200)] + [b"b%d" % i for i in range(200)])


def test_a_producer_fenced_by_another_with_its_transactional_id_ends_the_loop_publishing_nothing(
    kafka_settings: Settings,
) -> None:
    settings = kafka_settings
    source, output = settings.topics.full("started"), settings.topics.full("predictions")
    group = f"{settings.topics.prefix}echo-fenced"
    config = LoopConfig(
        batch_max_messages=100, batch_max_wait_s=0.1, batch_linger_s=0.0,
        retry_backoff_s=0.1, retry_backoff_max_s=1.0, transaction_timeout_ms=10_000,
    )  # fmt: skip
    loop: ExactlyOnceLoop[Any] = ExactlyOnceLoop(
        settings, Echo(output), config, group=group, transactional_id=f"{group}.0",
        topics=[source], name="echo",
    )  # fmt: skip
    stop, ended = threading.Event(), []

    def run() -> None:
        try:
            loop.run(stop)
        except ProducerFailedError as failed:
            ended.append(failed)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        send(settings, source, [b"a%d" % i for i in range(200)])
        assert len(consume_all(settings, output, expected=200, idle_timeout_s=30)) == 200

        # A second process under the same transactional id (a replica started with the same
        # instance id): its init_transactions bumps the epoch and fences the loop's producer.
        usurper = transactions.transactional_producer(settings, f"{group}.0", 10_000)
        usurper.init_transactions(30)
        send(settings, source, [b"b%d" % i for i in range(50)])
        runner.join(timeout=60)
        assert not runner.is_alive(), "the fenced loop went on"
    finally:
        stop.set()
        runner.join(timeout=60)
    assert len(ended) == 1
    assert ended[0].fenced
    # read_committed: what the fenced producer tried to publish never became visible.
    copied = consume_all(settings, output, idle_timeout_s=5)
    assert sorted(m.value() or b"" for m in copied) == sorted(b"a%d" % i for i in range(200))
