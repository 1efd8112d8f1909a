"""Client configuration and factories: one place that turns Settings into librdkafka configs.

librdkafka options from the settings (``kafka_config_file`` and ``kafka_config`` for every
client, then ``producer_config`` / ``consumer_config``) are passed through unchanged and win over
the defaults here, so SASL/SSL, tuning and client ids are a setting away.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient, ClusterMetadata  # type: ignore[attr-defined]

from ridestream.kafka import refusals
from ridestream.kafka.exceptions import AccessDeniedError, KafkaOperationError
from ridestream.settings import KafkaConfigValue, Settings

logger = logging.getLogger(__name__)

Config = dict[str, Any]


def common_config(settings: Settings) -> Config:
    """What every client gets: bootstrap servers, pass-through options, logging into Python."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "logger": refusals.librdkafka_log,
        "error_cb": refusals.log_client_error,
        **settings.client_options,
    }


def producer_config(settings: Settings, **overrides: KafkaConfigValue) -> Config:
    """An idempotent producer config: acks=all, ordered, bounded delivery time.

    Tuning passes through; the two delivery guarantees do not: they are applied last, so no
    setting can quietly trade them away.
    """
    return {
        **common_config(settings),
        "message.timeout.ms": settings.delivery_timeout_ms,
        "linger.ms": 5,
        "compression.type": "lz4",
        **settings.producer_config,
        **overrides,
        "enable.idempotence": True,
        "acks": "all",
    }


# A member that stops heartbeating loses its partitions after this long: a SIGKILLed replica's
# partitions are served again within about 10 s plus a rebalance. Kafka's 45 s default trades
# that for tolerance of long pauses; heartbeats come from librdkafka's own thread, so a busy
# Python loop does not miss them.
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 2_000


def consumer_config(settings: Settings, group_id: str, **overrides: KafkaConfigValue) -> Config:
    """A consumer config that commits only what the caller says is done, reading committed data.

    Rebalances are cooperative (incremental): a replica joining or leaving moves only the
    partitions that change hands, and the other members keep consuming the rest.
    """
    return {
        **common_config(settings),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
        **settings.consumer_config,
        **overrides,
    }


def make_admin(settings: Settings, **overrides: KafkaConfigValue) -> AdminClient:
    """An AdminClient for the configured cluster."""
    return AdminClient({**common_config(settings), **overrides})


def cluster_metadata(admin: AdminClient, timeout_s: float) -> ClusterMetadata:
    """Ask the cluster for its metadata: the cheapest proof that a broker answers.
    AccessDeniedError when the cluster refused the client on the way."""
    refusals.forget()
    try:
        return admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        admin.poll(0)  # serves the error callbacks that say why, if the cluster refused us
        if (reason := refusals.refusal(exc)) is not None:
            raise AccessDeniedError("the cluster refused this client", reason) from exc
        hint = f" ({refusals.hint()})" if refusals.hint() else ""
        raise KafkaOperationError(
            f"the cluster did not answer a metadata request{hint}", exc.args[0]
        ) from exc


def unique_group_id(prefix: str) -> str:
    """A consumer group id nobody else uses, for one-off readers such as ``tail``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


_TRANSIENT_CODES = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
}


def is_transient(exc: BaseException) -> bool:
    """A Kafka error that a moment's wait cures (a leader being elected, a topic created a moment
    ago, a broker coming back): what the admin-side retries retry on."""
    if not isinstance(exc, KafkaException):
        return False
    error = exc.args[0]
    return bool(error.retriable() or error.code() in _TRANSIENT_CODES)


def rewind_to_committed(consumer: Consumer) -> None:
    """Seek every assigned partition back to its committed offset (after an aborted transaction:
    its batch is read again). A partition with nothing committed starts over, as
    ``auto.offset.reset=earliest`` would."""
    assignment = consumer.assignment()
    if not assignment:
        return
    for partition in consumer.committed(assignment, 30):
        if partition.offset < 0:
            partition.offset = OFFSET_BEGINNING
        consumer.seek(partition)


def next_batch(
    consumer: Consumer, max_messages: int, max_wait_s: float, not_before: float = 0.0
) -> list[Message]:
    """Up to ``max_messages`` of what has arrived; waits (``max_wait_s`` at most) only when
    nothing has.

    ``consume(n, timeout)`` waits out its timeout unless ``n`` messages come: at a steady 2,000
    rides/s every ride would wait for the batch to fill (~100 ms) on top of the commit. Taking
    what is there instead sizes batches by the load: full under a backlog, small at low rates,
    where a message waits at most for the batch in flight.

    ``not_before`` (a ``time.monotonic()`` instant) lingers like a producer's ``linger.ms``: a
    batch that is not full keeps gathering until then (:class:`AdaptiveLinger` says how long
    that pays).
    """
    messages: list[Message] = consumer.consume(max_messages, 0)
    linger = not_before - time.monotonic()
    if linger > 0 and len(messages) < max_messages:
        messages += consumer.consume(max_messages - len(messages), linger)
    if messages:
        return messages
    first = consumer.poll(max_wait_s)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, 0)] if max_messages > 1 else [first]


JOIN_TIMEOUT_S = 30.0


def batches_until_idle(
    consumer: Consumer,
    idle_timeout_s: float,
    *,
    batch_size: int = 1000,
    poll_s: float = 0.5,
    deadline_s: float | None = None,
) -> Iterator[list[Message]]:
    """Batches from a subscribed consumer until none came for ``idle_timeout_s`` (or the deadline).

    For readers that drain a topic and stop (tail, DLQ replay, tests), not for services. A message
    carrying an error raises KafkaOperationError.
    """
    start = time.monotonic()
    last: float | None = None  # the idle clock starts once partitions are assigned
    while deadline_s is None or time.monotonic() - start < deadline_s:
        batch = consumer.consume(batch_size, poll_s)
        now = time.monotonic()
        if last is None and (consumer.assignment() or now - start > JOIN_TIMEOUT_S):
            last = now  # joined (or gave up waiting to: nothing can be assigned)
        if batch:
            last = now
            for msg in batch:
                if msg.error():
                    raise KafkaOperationError("reading a topic failed", msg.error())
            yield batch
        elif last is not None and now - last > idle_timeout_s:
            return


class AdaptiveLinger:
    """How long a loop's next batch may gather: as long as its cycles work, within a bound.

    A batch has a fixed cost (a transaction on both sides of the wire, the calls a batch makes
    whatever its size). Waiting for more only pays while that cost dominates, so the linger
    follows the work: the next batch begins no earlier than ``2 × cycle`` after the last one was
    taken (``cycle``: a moving average of the time the loop spent on a batch before asking for
    the next), and never later than ``upper_s`` after. At low rates cycles are short and a ride
    waits milliseconds; as batches grow, so do cycles and the linger, which holds the loop at most
    half idle and caps the number of transactions a second; once a cycle takes ``upper_s / 2`` or
    more, or under a backlog (full batches never wait), nothing waits at all. Like Triton's
    dynamic batcher, the delay a batch may add is bounded by a setting (``upper_s``).
    """

    SMOOTHING = 0.3  # weight of the newest cycle in the moving average

    def __init__(self, upper_s: float) -> None:
        self.upper_s = upper_s
        self.cycle_s = 0.0

    def worked(self, seconds: float) -> None:
        """A cycle spent ``seconds`` between taking its batch and asking for the next."""
        self.cycle_s += self.SMOOTHING * (max(seconds, 0.0) - self.cycle_s)

    @property
    def gap_s(self) -> float:
        """The least time between one batch being taken and the next."""
        return min(self.upper_s, 2.0 * self.cycle_s)


class Batches:
    """:func:`next_batch` for a loop, each batch lingering as :class:`AdaptiveLinger` says (at
    most ``linger_s`` after the previous one was taken; 0: no linger)."""

    def __init__(
        self, consumer: Consumer, max_messages: int, max_wait_s: float, linger_s: float
    ) -> None:
        self.consumer, self.max_messages, self.max_wait_s = consumer, max_messages, max_wait_s
        self.linger = AdaptiveLinger(linger_s)
        self._taken: float | None = None  # when the last batch was handed to the loop

    def next(self) -> list[Message]:
        """The next batch (empty when nothing came within ``max_wait_s``)."""
        now = time.monotonic()
        not_before = 0.0
        if self._taken is not None:
            self.linger.worked(now - self._taken)
            not_before = self._taken + self.linger.gap_s
        messages = next_batch(self.consumer, self.max_messages, self.max_wait_s, not_before)
        self._taken = time.monotonic()
        return messages

    def ready(self) -> list[Message]:
        """Up to a batch of what has already arrived, without waiting or lingering (empty when
        nothing has): for a loop that has time to fill before it can use a batch."""
        messages: list[Message] = self.consumer.consume(self.max_messages, 0)
        return messages
