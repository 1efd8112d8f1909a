"""Test helpers: put rides on the stream, read what really landed on a topic, run a service loop
in a thread, wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Message

from producers.replay import replay
from ridestream.kafka.clients import batches_until_idle, consumer_config, unique_group_id
from ridestream.ml.tlc import month_file
from ridestream.settings import Settings


def replay_started(settings: Settings, rides: int, id_prefix: str) -> None:
    """February's first ``rides`` as RideStarted events, all at once, without completions."""
    replay(
        settings,
        month_file("2023-02"),
        rate=0,
        limit=rides,
        completions=False,
        id_prefix=id_prefix,
        progress=False,
    )


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


class Running:
    """A component's ``run(stop, on_batch)`` in a thread, stopped and checked on exit."""

    def __init__(self, component: Any, on_batch: Callable[[Any], None] | None = None) -> None:
        self.stop = threading.Event()
        self.failure: list[BaseException] = []

        def run() -> None:
            try:
                component.run(self.stop, on_batch)
            except BaseException as exc:
                self.failure.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        assert not self.failure, self.failure


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)
