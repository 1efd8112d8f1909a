"""The subscriber the ride backend imports: decisions (and, if asked, predictions) as they land.

Dispatch, pricing and notifications each follow ``rides.decisions`` in a consumer group of their
own (``<prefix>ridestream.subscriber.<name>``), reading only committed transactions
(``read_committed``): a decision is delivered only once the decision service's transaction that
published it has committed.

Delivery is **at least once**. A record's offset is stored when its handler returns, and stored
offsets are committed every second, on a rebalance and on close. A process that dies between a
handler's return and the next commit sees those records again after it restarts, so a handler
must be idempotent: the decision's ``ride_id`` (also the record's key) is the idempotency key.

A handler that raises is retried with exponential backoff (``retries`` times); if it still fails,
the record goes to the dead-letter topic with kind ``handler_failed`` and the error, its offset is
stored, and the stream goes on. Bytes that cannot be decoded, or a record that breaks the
contract, go there too (``corrupt_payload``, ``unknown_schema``, ``invalid_value``, …). Nothing is
dropped silently; ``ridestream dlq replay`` sends fixed letters back.

``stop()`` (from a signal handler or another thread) ends ``run`` after the record in hand;
``close()`` commits what was handled and leaves the group. :class:`AsyncDecisionSubscriber` is the
same for asyncio handlers. ``docs/subscribers.md`` has a runnable example.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Self

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from tenacity import AsyncRetrying, Retrying, stop_after_attempt, wait_exponential

from ridestream.contracts.events import Decision, Event, Prediction
from ridestream.contracts.exceptions import InvalidEventError
from ridestream.contracts.schemas import DECISION, PREDICTION
from ridestream.kafka import dlq
from ridestream.kafka.clients import consumer_config, producer_config
from ridestream.kafka.decoding import INVALID_VALUE
from ridestream.kafka.producer import ReliableProducer
from ridestream.serde.codecs import Serde, make_serde
from ridestream.serde.exceptions import DecodeError
from ridestream.settings import Settings

logger = logging.getLogger(__name__)

HANDLER_FAILED = "handler_failed"
EARLIEST, LATEST = "earliest", "latest"
Handler = Callable[[Decision | Prediction], object]
AsyncHandler = Callable[[Decision | Prediction], Awaitable[object]]
Assigned = Callable[[list[TopicPartition]], None]


def subscriber_group(settings: Settings, name: str) -> str:
    """The consumer group of the subscriber called ``name`` (its ACLs follow this prefix)."""
    return f"{settings.topics.prefix}ridestream.subscriber.{name}"


class _Subscription:
    """What both subscribers share: the consumer, decoding, dead letters and stored offsets.

    ``name`` is the subscriber's own consumer group; ``start`` is where a group with nothing
    committed begins (``earliest``, or ``latest``: only what is published from now on).
    ``commit=False`` for a reader that never resumes (it always starts at ``latest``);
    ``on_assigned`` is called with the partitions after each assignment (on the consumer's
    thread); other keywords are librdkafka consumer options.
    """

    def __init__(
        self,
        settings: Settings,
        name: str,
        *,
        predictions: bool = False,
        retries: int = 3,
        backoff_s: float = 0.2,
        start: str = EARLIEST,
        commit: bool = True,
        on_assigned: Assigned | None = None,
        group_id: str | None = None,
        **consumer_overrides: Any,
    ) -> None:
        group_id = group_id or subscriber_group(settings, name)
        if start not in (EARLIEST, LATEST):
            raise ValueError(f"start must be {EARLIEST!r} or {LATEST!r}, not {start!r}")
        self.group_id = group_id
        self._start, self._on_assigned = start, on_assigned
        self._serdes: dict[str, tuple[type[Event], Serde]] = {
            settings.topics.full("decisions"): (Decision, make_serde(DECISION, settings))
        }
        if predictions:
            self._serdes[settings.topics.full("predictions")] = (
                Prediction,
                make_serde(PREDICTION, settings),
            )
        self._dlq_topic = settings.topics.full("dlq")
        # One retry policy per subscriber, not one per record.
        retry: dict[str, Any] = {
            "stop": stop_after_attempt(retries + 1),
            "wait": wait_exponential(multiplier=backoff_s, max=max(backoff_s, 5.0)),
            "reraise": True,
        }
        self._retrying, self._async_retrying = Retrying(**retry), AsyncRetrying(**retry)
        self._dlq: ReliableProducer | None = None
        self._producer_config = producer_config(settings)
        self.consumer = Consumer(
            consumer_config(
                settings,
                group_id,
                **{
                    "auto.offset.reset": start,
                    "enable.auto.commit": commit,
                    "auto.commit.interval.ms": 1000,
                    **consumer_overrides,
                },
            )
        )
        self.consumer.subscribe(list(self._serdes), on_assign=self._assigned)
        self._stopping = threading.Event()
        self.dead_letters = 0

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._start == LATEST:
            # A partition with nothing committed starts at its end as it is *now*, before anyone
            # is told: whatever was published before is older than the notification below.
            committed = consumer.committed(partitions, timeout=10)
            for tp, done in zip(partitions, committed, strict=True):
                if done.offset < 0:
                    _, tp.offset = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
        consumer.incremental_assign(partitions)
        if self._on_assigned is not None:
            self._on_assigned(partitions)

    def _decode(self, msg: Message) -> Decision | Prediction | dlq.DeadLetter:
        model, serde = self._serdes[msg.topic() or ""]
        try:
            event = model.parse(serde.decode(msg.value() or b"", msg.topic() or ""))
        except DecodeError as exc:
            return dlq.DeadLetter(msg, exc.kind, str(exc))
        except InvalidEventError as exc:
            return dlq.DeadLetter(msg, INVALID_VALUE, str(exc))
        assert isinstance(event, Decision | Prediction)
        return event

    def _useful(self, msg: Message) -> bool:
        error = msg.error()
        if error is None:
            return True
        if error.code() == KafkaError._PARTITION_EOF:
            return False
        if error.fatal():
            raise KafkaException(error)
        logger.warning("subscriber %s: %s", self.group_id, error)
        return False

    def _dead(self, letter: dlq.DeadLetter) -> None:
        """Send a letter and wait for the broker's acknowledgement: only then is it safe to move
        past its record."""
        logger.warning(
            "subscriber %s: %s at %s[%s]@%s to the dead-letter topic: %s",
            self.group_id, letter.kind, letter.msg.topic(), letter.msg.partition(),
            letter.msg.offset(), letter.message,
        )  # fmt: skip
        if self._dlq is None:
            self._dlq = ReliableProducer(self._producer_config)
        msg = letter.msg
        headers: list[tuple[str, str | bytes | None]] = [*dlq.headers_for(letter, self.group_id)]
        self._dlq.produce(self._dlq_topic, msg.value(), msg.key(), headers)
        self._dlq.flush()
        self.dead_letters += 1

    def _done(self, msg: Message) -> None:
        self.consumer.store_offsets(message=msg)

    def stop(self) -> None:
        """End ``run`` after the record being handled (safe from signal handlers and threads)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """Whether ``stop`` was called."""
        return self._stopping.is_set()

    def _close(self) -> None:
        try:
            self.consumer.close()  # commits the stored offsets (auto commit) and leaves the group
        finally:
            if self._dlq is not None:
                self._dlq.close()


class DecisionSubscriber(_Subscription):
    """Decisions (and predictions, with ``predictions=True``) handed to a function, at least once."""

    def poll(self, handler: Handler, timeout_s: float = 0.5, max_records: int = 500) -> int:
        """Hand what has arrived (up to ``max_records``, waiting at most ``timeout_s``) to
        ``handler``; returns how many records were read."""
        messages = self.consumer.consume(max_records, timeout_s)
        for msg in messages:
            if self.stopping:
                break
            if self._useful(msg):
                self._handle(handler, msg)
        return len(messages)

    def _handle(self, handler: Handler, msg: Message) -> None:
        event = self._decode(msg)
        if isinstance(event, dlq.DeadLetter):
            self._dead(event)
        else:
            try:
                self._retrying(handler, event)
            except Exception as exc:  # the handler's failure, after its retries
                self._dead(dlq.DeadLetter(msg, HANDLER_FAILED, f"{type(exc).__name__}: {exc}"))
        self._done(msg)

    def run(self, handler: Handler, poll_timeout_s: float = 0.5) -> None:
        """Hand every record to ``handler`` until ``stop()``."""
        while not self.stopping:
            self.poll(handler, poll_timeout_s)

    def close(self) -> None:
        """Commit what was handled and leave the group."""
        self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncDecisionSubscriber(_Subscription):
    """:class:`DecisionSubscriber` for ``async`` handlers: the consumer's waits run in a worker
    thread, the handler on the event loop (one record at a time, in order)."""

    async def poll(
        self, handler: AsyncHandler, timeout_s: float = 0.5, max_records: int = 500
    ) -> int:
        """Await ``handler`` for what has arrived; returns how many records were read."""
        messages = await asyncio.to_thread(self.consumer.consume, max_records, timeout_s)
        for msg in messages:
            if self.stopping:
                break
            if self._useful(msg):
                await self._handle(handler, msg)
        return len(messages)

    async def _handle(self, handler: AsyncHandler, msg: Message) -> None:
        event = self._decode(msg)
        if isinstance(event, dlq.DeadLetter):
            await asyncio.to_thread(self._dead, event)
        else:
            try:
                async for attempt in self._async_retrying:
                    with attempt:
                        await handler(event)
            except Exception as exc:  # the handler's failure, after its retries
                letter = dlq.DeadLetter(msg, HANDLER_FAILED, f"{type(exc).__name__}: {exc}")
                await asyncio.to_thread(self._dead, letter)
        self._done(msg)

    async def run(self, handler: AsyncHandler, poll_timeout_s: float = 0.5) -> None:
        """Await ``handler`` for every record until ``stop()``."""
        while not self.stopping:
            await self.poll(handler, poll_timeout_s)

    async def close(self) -> None:
        """Commit what was handled and leave the group."""
        await asyncio.to_thread(self._close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
