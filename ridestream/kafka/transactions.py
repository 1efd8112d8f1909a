"""What every exactly-once loop (consume → produce, offsets in the same Kafka transaction) does
the same way: produce into the open transaction, dead-letter within it, commit it with the
consumer's positions, and on a failure abort it and rewind to the committed offsets."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from ridestream.kafka import dlq
from ridestream.kafka.clients import is_transient, producer_config
from ridestream.kafka.exceptions import ProducerFailedError
from ridestream.kafka.producer import produce_with_room
from ridestream.settings import KafkaConfigValue, Settings

logger = logging.getLogger(__name__)

Headers = Sequence[tuple[str, str | bytes | None]]


def transactional_producer(settings: Settings, transactional_id: str, timeout_ms: int) -> Producer:
    """A producer for one loop's transactions (not yet initialized: the caller fences)."""
    config: dict[str, KafkaConfigValue] = {
        "transactional.id": transactional_id,
        "transaction.timeout.ms": timeout_ms,
        # librdkafka insists a message may not outlive its transaction.
        "message.timeout.ms": min(settings.delivery_timeout_ms, timeout_ms),
    }
    return Producer(producer_config(settings, **config))


INIT_ATTEMPTS = 3  # of 30 s each, for a new producer to find a coordinator that is moving


def init_with_retries(producer: Producer) -> None:
    """``init_transactions``, tried again while the transaction coordinator moves."""
    for attempt in range(INIT_ATTEMPTS):
        try:
            producer.init_transactions(30)
            return
        except KafkaException as exc:
            if attempt == INIT_ATTEMPTS - 1 or not is_transient(exc):
                raise
            logger.warning("init_transactions failed (%s); trying again", exc)


def produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: Any,
    headers: Headers | None = None,
    on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
) -> None:
    """Produce into the open transaction, waiting for room when the local queue is full (the
    queue-full policy of ``producer.py``; a failed delivery fails the commit)."""
    produce_with_room(
        producer,
        lambda: producer.produce(
            topic, value, key, headers=list(headers or ()), on_delivery=on_delivery
        ),
    )


def produce_all(
    producer: Producer, topic: str, values: Sequence[bytes], keys: Sequence[Any]
) -> None:
    """A batch of keyed messages into the open transaction: the hot path of every loop.

    The same as :func:`produce` per message, without its per-call wrapping: at stream rates
    that wrapper would double the client's cost per message.
    """
    send = producer.produce
    for value, key in zip(values, keys, strict=True):
        try:
            send(topic, value, key)
        except BufferError:  # the local queue is full: the queue-full policy's path
            produce(producer, topic, value, key)


def produce_dead_letters(
    producer: Producer, topic: str, letters: Sequence[dlq.DeadLetter], group: str
) -> None:
    """Each letter's original key and bytes to the DLQ, with headers saying why and where from."""
    for letter in letters:
        produce(
            producer,
            topic,
            letter.msg.value(),
            letter.msg.key(),
            dlq.headers_for(letter, group),
        )


def positions(consumer: Consumer) -> tuple[list[TopicPartition], Any]:
    """What a transaction commits for the input: the consumer's positions and group metadata."""
    assignment = consumer.assignment()
    return (consumer.position(assignment) if assignment else []), consumer.consumer_group_metadata()


def commit_with(producer: Producer, offsets: list[TopicPartition], group: Any) -> float:
    """Add the offsets to the transaction and commit it; returns the commit's seconds."""
    if offsets:
        producer.send_offsets_to_transaction(offsets, group, 30)
    started = time.perf_counter()
    producer.commit_transaction(30)
    return time.perf_counter() - started


def commit(producer: Producer, consumer: Consumer) -> float:
    """Add the consumer's positions to the transaction and commit it; returns the commit's
    seconds."""
    return commit_with(producer, *positions(consumer))


class CommitThread:
    """One daemon thread that runs commits one at a time, in order (an executor of one worker).

    A daemon, unlike ``ThreadPoolExecutor``'s workers: a commit stuck inside librdkafka (its
    timeouts are not always kept while a broker restarts) is abandoned with its producer, and
    must not keep the process from exiting.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[float], Callable[[], float]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, call = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:
                    future.set_exception(exc)

    def submit(self, call: Callable[[], float]) -> Future[float]:
        future: Future[float] = Future()
        self._jobs.put((future, call))
        return future

    def shutdown(self) -> None:
        """No more commits; the thread ends after the one it runs."""
        self._jobs.put(None)


class CommitInFlight:
    """A transaction's commit (:func:`commit_with`) on a helper thread.

    Sending the offsets and committing are round trips to two coordinators, a large share of a
    full batch's time. A loop's next consume, decode and model work need neither
    the producer nor the transaction, so they go on meanwhile; the loop waits for this before it
    touches the producer again. librdkafka's calls release the GIL while they wait.

    ``commits`` is the loop's own commit thread, so commits run one at a time and in order: a
    thread per commit would make the loop wait for each new thread to start.
    """

    def __init__(self, producer: Producer, consumer: Consumer, commits: CommitThread) -> None:
        # Taken here, on the loop's thread, before it consumes on: the positions after the
        # transaction's batches.
        offsets, group = positions(consumer)
        self._future = commits.submit(lambda: commit_with(producer, offsets, group))

    def done(self) -> bool:
        """Whether the commit has ended (either way): :meth:`wait` would not block."""
        return self._future.done()

    def wait(self, timeout_s: float) -> float:
        """Block until committed, and return the commit's seconds; raises the commit's error.

        A commit that has not returned after ``timeout_s`` raises a *fatal* timeout: the loop
        then replaces the producer (its successor's ``init_transactions`` fences this one and
        aborts what it left open) and reads the batch again, exactly once as after a crash.
        """
        try:
            return self._future.result(timeout_s)
        except FutureTimeoutError:
            raise KafkaException(
                KafkaError(
                    KafkaError._TIMED_OUT,
                    f"the transaction's commit did not return within {timeout_s:.0f} s",
                    fatal=True,
                )
            ) from None


FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED})


def _failed(error: KafkaError, what: str) -> ProducerFailedError:
    return ProducerFailedError(what, error, fenced=error.code() in FENCED)


def abort(producer: Producer, exc: Exception) -> str:
    """Abort the open transaction after ``exc``; returns the failure's reason code. The caller
    rewinds the consumer next, so the batch is read again. ProducerFailedError when the
    producer can never be used again (``exc`` or the abort was fatal)."""
    error = exc.args[0] if isinstance(exc, KafkaException) else None
    if isinstance(error, KafkaError) and error.fatal():
        raise _failed(error, "fatal producer error") from exc
    reason = error.name() if isinstance(error, KafkaError) else type(exc).__name__
    logger.warning("batch failed (%s); aborting the transaction and rewinding", exc)
    try:
        producer.abort_transaction(30)
    except KafkaException as abort_error:
        if abort_error.args[0].fatal():
            raise _failed(abort_error.args[0], "fatal producer error while aborting") from exc
        logger.warning("abort failed: %s", abort_error)
    return reason
