"""Test helpers that read what really landed on a topic."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Message

from ridestream.kafka.clients import batches_until_idle, consumer_config, unique_group_id
from ridestream.settings import Settings


def consume_all(
    settings: Settings,
    topic: str,
    expected: int | None = None,
    idle_timeout_s: float = 5.0,
    deadline_s: float = 120.0,
) -> list[Message]:
    """Every committed message of a topic: stops at ``expected`` or after an idle spell."""
    consumer = Consumer(consumer_config(settings, unique_group_id("test-reader")))
    consumer.subscribe([topic])
    messages: list[Message] = []
    try:
        for batch in batches_until_idle(consumer, idle_timeout_s, deadline_s=deadline_s):
            messages += batch
            if expected is not None and len(messages) >= expected:
                # Linger briefly: anything beyond `expected` is a duplicate the test must see.
                messages += [m for m in consumer.consume(1000, 1.0) if not m.error()]
                break
    finally:
        consumer.close()
    return messages


def keys(messages: list[Message]) -> list[str]:
    """Message keys as text."""
    return [m.key().decode() for m in messages]


def values(messages: list[Message]) -> list[Any]:
    """Raw message values."""
    return [m.value() for m in messages]
