"""A producer with delivery discipline: every message is acknowledged or its failure is raised.

``produce`` then ``poll(0)``; the first delivery error is remembered and raised on the next
``produce``/``flush``; ``flush`` on close. The asyncio variant resolves one future per message from
the delivery report, so a request handler can await its own acknowledgement.

A full local queue is met one way everywhere (:class:`QueueFull`, :func:`produce_with_room`): serve
delivery reports for a while — what frees room — and try again, a bounded number of times, then
raise :class:`QueueFullError`. The transactional loops use it too (``transactions.py``); the
asyncio producer waits the same way with ``asyncio.sleep``, never blocking its event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from confluent_kafka import KafkaException, Message, Producer

from ridestream.kafka.exceptions import DeliveryError, KafkaOperationError, QueueFullError

logger = logging.getLogger(__name__)

Headers = list[tuple[str, str | bytes | None]]
DeliveryCallback = Callable[[Any, Message], None]


@dataclass(frozen=True)
class QueueFull:
    """What to do when the producer's local queue is full: wait ``wait_s`` serving delivery
    reports, up to ``retries`` times, then give up."""

    retries: int = 20
    wait_s: float = 0.5

    def exhausted(self) -> QueueFullError:
        """The error once every wait has passed."""
        return QueueFullError(
            f"local queue still full after {self.retries} waits of {self.wait_s}s "
            "(is the broker reachable?)"
        )


DEFAULT_QUEUE_FULL = QueueFull()


def produce_with_room(
    producer: Producer, send: Callable[[], None], policy: QueueFull = DEFAULT_QUEUE_FULL
) -> None:
    """``send()`` (one ``producer.produce``), waiting for room as ``policy`` says."""
    for attempt in range(policy.retries + 1):
        try:
            send()
            return
        except BufferError:
            if attempt == policy.retries:
                raise policy.exhausted() from None
            producer.poll(policy.wait_s)  # serving delivery reports is what frees queue space


def describe_failure(err: Any, msg: Message) -> DeliveryError:
    """A DeliveryError that says where the message was going, keeping librdkafka's error."""
    key = msg.key()
    key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    return DeliveryError(f"delivery to {msg.topic()} failed (key={key_text!r})", err)


class ClosesOnExit:
    """``with`` closes (flushes) the producer; leaving on an error, a failing close is logged
    instead of masking the error."""

    def close(self) -> None:
        """Flush what is queued and release the producer."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # keep the original error; still try to deliver what was queued
            self.close()
        except Exception:
            logger.exception("flush while unwinding from %s failed", exc_type.__name__)


class ReliableProducer(ClosesOnExit):
    """confluent_kafka.Producer that never loses a failure silently."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        queue_full_retries: int = 20,
        queue_full_wait_s: float = 0.5,
        remember_errors: bool = True,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """``remember_errors=False`` when every message's failure already reaches its own caller;
        ``on_delivery`` sees every delivery report too (metrics, latency sampling)."""
        self._producer = Producer(config)
        self._remember_errors = remember_errors
        self._default_callback = (
            self._on_delivery if on_delivery is None else self._chain(on_delivery)
        )
        self.queue_full = QueueFull(queue_full_retries, queue_full_wait_s)
        self._first_error: DeliveryError | None = None
        self.delivered = 0
        self.failed = 0

    def _on_delivery(self, err: Any, msg: Message) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        failure = describe_failure(err, msg)
        logger.error("%s", failure)
        if self._remember_errors and self._first_error is None:
            self._first_error = failure

    def raise_delivery_error(self) -> None:
        """Raise (once) the first delivery failure seen since the last call."""
        if self._first_error is not None:
            failure, self._first_error = self._first_error, None
            raise failure

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None = None,
        headers: Headers | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue one message; raises an earlier delivery failure or a persistently full queue."""
        self.raise_delivery_error()
        callback = self._default_callback if on_delivery is None else self._chain(on_delivery)
        producer = self._producer
        try:
            produce_with_room(
                producer,
                lambda: producer.produce(topic, value, key, headers=headers, on_delivery=callback),
                self.queue_full,
            )
        except KafkaException as exc:
            raise KafkaOperationError(f"produce to {topic} failed", exc.args[0]) from exc
        producer.poll(0)

    def produce_many(self, topic: str, values: list[bytes], keys: list[str]) -> None:
        """Queue a batch of messages, serving delivery reports as the queue fills."""
        self.raise_delivery_error()
        produce, callback = self._producer.produce, self._default_callback
        for i, (value, key) in enumerate(zip(values, keys, strict=True)):
            try:
                produce(topic, value, key, on_delivery=callback)
            except BufferError:
                self.produce(topic, value, key)  # the queue-full policy's path
            except KafkaException as exc:
                raise KafkaOperationError(f"produce to {topic} failed", exc.args[0]) from exc
            if i % 1000 == 999:
                self._producer.poll(0)
        self._producer.poll(0)

    def _chain(self, on_delivery: DeliveryCallback) -> DeliveryCallback:
        def both(err: Any, msg: Message) -> None:
            self._on_delivery(err, msg)
            on_delivery(err, msg)

        return both

    def poll(self, timeout_s: float = 0.0) -> int:
        """Serve delivery reports."""
        served: int = self._producer.poll(timeout_s)
        return served

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every queued message; raise the first failure or what is still in flight."""
        remaining = self._producer.flush(timeout_s)
        self.raise_delivery_error()
        if remaining:
            raise DeliveryError(f"{remaining} message(s) still unacknowledged after {timeout_s}s")

    def __len__(self) -> int:
        return len(self._producer)

    @property
    def raw(self) -> Producer:
        """The underlying confluent_kafka.Producer, for what this wrapper does not cover."""
        return self._producer

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush what is queued; raises if anything could not be delivered."""
        self.flush(timeout_s)


class AsyncProducer:
    """An asyncio face on ReliableProducer: ``await send(...)`` returns once the broker has it.

    A daemon thread serves delivery reports and hands each result to the event loop that waits.
    A full local queue is waited out with ``asyncio.sleep`` (that thread is what drains it), never
    by blocking the event loop.
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        queue_full_retries: int = 20,
        queue_full_wait_s: float = 0.5,
    ) -> None:
        self._producer = ReliableProducer(config, queue_full_retries=0, remember_errors=False)
        self.queue_full = QueueFull(queue_full_retries, queue_full_wait_s)
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._closing.is_set():
            try:
                self._producer.poll(0.1)
            except Exception:  # one callback's failure must not stop every later delivery
                logger.exception("serving delivery reports failed")

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | str | None = None,
        headers: Headers | None = None,
    ) -> Message:
        """Produce one message and wait for its delivery report; raises DeliveryError."""
        loop = asyncio.get_running_loop()
        delivered: asyncio.Future[Message] = loop.create_future()

        def settle(err: Any, msg: Message) -> None:
            if delivered.done():  # the waiter gave up (timeout, cancellation)
                return
            if err is None:
                delivered.set_result(msg)
            else:
                delivered.set_exception(describe_failure(err, msg))

        def on_delivery(err: Any, msg: Message) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, err, msg)

        policy = self.queue_full
        for attempt in range(policy.retries + 1):
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                break
            except QueueFullError:  # the policy's wait, without blocking the event loop
                if attempt == policy.retries:
                    raise policy.exhausted() from None
                await asyncio.sleep(policy.wait_s)
        return await delivered

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush, then stop the delivery thread."""
        try:
            remaining = self._producer.raw.flush(timeout_s)
            if remaining:
                raise DeliveryError(f"{remaining} message(s) unacknowledged at close")
        finally:
            self._closing.set()
            self._poller.join(timeout=5)
