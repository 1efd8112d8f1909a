"""The exactly-once loop every consume → transform → produce service runs.

A service brings its :class:`Work`; the loop owns the clients and the cycle. Once: connect (a
read_committed consumer, a transactional producer), ``init_transactions`` (which fences an
earlier producer with this transactional id and aborts what it left open), ``Work.started``,
subscribe. Then, each cycle:

1. **Take a batch** of what has arrived (:class:`ridestream.kafka.clients.Batches`).
2. **Prepare** it (``Work.prepare``): decode, validate, compute, write a database — everything
   but the producer. With ``overlap``, more batches of what has already arrived join the
   transaction while the previous one still commits, or under a backlog (the last batch was
   full), up to ``transaction_max_batches``.
3. **Settle the previous transaction**: wait for its commit, then ``Work.committed``.
4. **Drop what was read across a rebalance**: some of it may be another member's now; rewind to
   the committed offsets and read it again.
5. **Publish**: begin a transaction; ``Work.publish`` produces the outputs and dead letters.
6. **Commit**: the consumer's positions after the batches go into the transaction, then the
   commit — on a helper thread with ``overlap`` (the next cycle's steps 1 and 2 run meanwhile;
   the loop touches the producer again only after step 3), else at once, followed by
   ``Work.committed``.
7. ``after_cycle`` (given to :meth:`ExactlyOnceLoop.run`): periodic work between batches.

A Kafka error, a producer queue that stayed full, or one of the work's ``retriable`` errors in
steps 2–6 aborts the open transaction, rewinds the consumer to the committed offsets and retries
after an exponential backoff. A client that failed for good is replaced: a consumer (a static
member fenced when the group coordinator moved) by a new member of the group, a producer (a
transaction its coordinator lost) by a new one under the same transactional id; a fenced
producer (another one holds the id) ends the loop. A rewind that fails (a seek in the middle of
a rebalance can) is retried before anything is read again: otherwise the next commit would carry
the positions after the aborted batch. ``stop`` (set by SIGTERM/SIGINT) ends it at a cycle's
boundary: the last commit is awaited (or aborted), then the clients close.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from ridestream.kafka import transactions
from ridestream.kafka.clients import Batches, consumer_config, rewind_to_committed
from ridestream.kafka.exceptions import AccessDeniedError, ProducerFailedError, QueueFullError
from ridestream.kafka.loop_config import LoopConfig
from ridestream.kafka.membership import Membership
from ridestream.kafka.refusals import refusal
from ridestream.runtime import settle_for_streaming
from ridestream.settings import Settings

logger = logging.getLogger(__name__)

P = TypeVar("P")


def group_name(settings: Settings, *parts: str) -> str:
    """A service's consumer group: ``ridestream.<parts>``, the topic prefix applied (shared
    clusters)."""
    return settings.topics.prefix + ".".join(("ridestream", *parts))


class Work(Protocol[P]):
    """What a service plugs into the loop; ``P`` is its prepared batch."""

    def prepare(self, messages: list[Message]) -> P | None:
        """Everything a batch needs before its transaction, without the producer (None: nothing
        to publish or commit)."""
        ...

    def publish(self, producer: Producer, batches: list[P]) -> None:
        """Produce prepared batches into the open transaction."""
        ...

    def committed(self, batches: list[P], seconds: float) -> None:
        """After the transaction of ``batches`` committed (in ``seconds``)."""
        ...

    def aborted(self, reason: str) -> None:
        """After a failed cycle was aborted and rewound (``reason``: the error's code)."""
        ...


@dataclass
class _Prepared(Generic[P]):
    consumed: int
    work: P


@dataclass
class _Committing(Generic[P]):
    commit: transactions.CommitInFlight
    batches: list[_Prepared[P]]


def _consumer_failed(exc: Exception) -> bool:
    """librdkafka's fatal consumer error: that consumer instance is done (a producer's fatal
    errors are flagged ``fatal()`` and end the loop in ``transactions.abort``)."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return isinstance(error, KafkaError) and error.code() == KafkaError._FATAL


class ExactlyOnceLoop(Generic[P]):
    """One service's consume → produce cycle, exactly once (see the module's docstring)."""

    def __init__(
        self,
        settings: Settings,
        work: Work[P],
        config: LoopConfig,
        *,
        group: str,
        transactional_id: str,
        topics: list[str],
        name: str,
    ) -> None:
        self.settings, self.work, self.config = settings, work, config
        self.group, self.transactional_id = group, transactional_id
        self.topics, self.name = topics, name
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self._committing: _Committing[P] | None = None
        self._commits = transactions.CommitThread(f"{name}-commit")
        self.membership = Membership(topics, config.on_assignment)
        # A rewind that failed (a seek in the middle of a rebalance): nothing is published until
        # one succeeds, or the positions after an aborted batch would be committed.
        self._rewind_pending = False
        self._running = False

    @property
    def ready(self) -> bool:
        """Serving: running, and a member of its group that has been given its partitions."""
        return self._running and self.membership.joined

    # -- lifecycle ------------------------------------------------------------------------------
    def connect(self) -> tuple[Consumer, Producer]:
        """The clients, the producer's transactions initialised (fencing a predecessor); the
        consumer not yet subscribed."""
        consumer = self._new_consumer()
        producer = transactions.transactional_producer(
            self.settings, self.transactional_id, self.config.transaction_timeout_ms
        )
        try:
            producer.init_transactions(30)
        except KafkaException as exc:
            self._stop_if_refused(exc)
            raise
        self.consumer, self.producer = consumer, producer
        return consumer, producer

    def _new_consumer(self) -> Consumer:
        config: dict[str, Any] = consumer_config(
            self.settings, self.group, **self.config.consumer_overrides
        )
        if self.config.stats_cb is not None:
            config["stats_cb"] = self.config.stats_cb  # a callable: not a config value
        return Consumer(config)

    def _replace_consumer(self) -> None:
        """A consumer that hit a fatal error (a static member fenced when the group coordinator
        moved, say) can never consume again: a new one joins the group in its place and reads
        from the committed offsets. The producer and its transactions are unaffected."""
        assert self.consumer is not None
        logger.warning("%s: the consumer failed for good; replacing it", self.name)
        with contextlib.suppress(KafkaException, RuntimeError):
            self.consumer.close()
        self.membership.left()  # what was read with the old one is not published
        self.consumer = self._new_consumer()
        self._rewind_pending = False  # the new consumer starts at the committed offsets
        self.subscribe()

    def subscribe(self) -> None:
        """Join the group for the loop's topics."""
        assert self.consumer is not None
        self.membership.subscribe(self.consumer)

    def run(
        self,
        stop: threading.Event,
        *,
        started: Callable[[], None] | None = None,
        after_cycle: Callable[[], None] | None = None,
    ) -> None:
        """Connect, then cycle until ``stop`` is set; ``started`` runs once the producer fenced
        its predecessor (before subscribing), ``after_cycle`` after every cycle that did not
        fail."""
        consumer, producer = self.connect()
        try:
            if started is not None:
                started()
            self.subscribe()
            self._running = True
            settle_for_streaming()  # models and clients loaded: what stays from here is steady
            logger.info(
                "%s group=%s transactional.id=%s started",
                self.name,
                self.group,
                self.transactional_id,
            )
            self._cycles(consumer, stop, after_cycle)
        finally:
            self._running = False
            try:
                self._settle()  # the last transaction commits before the clients close
            except KafkaException as exc:
                logger.warning("the last transaction's commit failed (%s); aborting it", exc)
                with contextlib.suppress(KafkaException):
                    (self.producer or producer).abort_transaction(10)
            self._commits.shutdown()
            # Clients that failed for good raise here: what ended the loop is the error to report.
            with contextlib.suppress(KafkaException, RuntimeError):
                (self.consumer or consumer).close()
            with contextlib.suppress(KafkaException):
                (self.producer or producer).flush(10)
            logger.info("%s stopped", self.name)

    def _cycles(
        self, consumer: Consumer, stop: threading.Event, after_cycle: Callable[[], None] | None
    ) -> None:
        config = self.config
        batches = Batches(
            consumer, config.batch_max_messages, config.batch_max_wait_s, config.batch_linger_s
        )
        backoff = config.retry_backoff_s
        # A queue that stayed full (the broker away for a while) is retried like a Kafka error.
        retriable: tuple[type[Exception], ...] = (KafkaException, QueueFullError, *config.retriable)
        while not stop.is_set():
            if self._rewind_pending and not self._rewind(consumer):
                stop.wait(backoff)
                backoff = min(backoff * 2, config.retry_backoff_max_s)
                continue
            try:
                rebalances = self.membership.rebalances
                messages = batches.next()
                self._cycle(consumer, batches, messages, rebalances)
            except retriable as exc:
                self._stop_if_refused(exc)
                with contextlib.suppress(KafkaException):
                    self._settle()  # a commit still running ends first; a failed one is aborted
                if self._recover(exc) and self.consumer is not None:
                    consumer = self.consumer
                    batches = Batches(
                        consumer, config.batch_max_messages, config.batch_max_wait_s,
                        config.batch_linger_s,
                    )  # fmt: skip
                stop.wait(backoff)
                backoff = min(backoff * 2, config.retry_backoff_max_s)
                continue
            backoff = config.retry_backoff_s
            if after_cycle is not None:
                after_cycle()

    def _recover(self, exc: Exception) -> bool:
        """After a failed cycle: abort and rewind, or replace a client that failed for good.
        True when the consumer was replaced."""
        assert self.producer is not None
        try:
            if _consumer_failed(exc):
                transactions.abort(self.producer, exc)
                self._replace_consumer()
                return True
            self._abort_and_rewind(exc)
        except ProducerFailedError as failed:
            if failed.fenced:
                raise
            self._replace_producer(failed)
            self._rewind_pending = True  # read the batch again, before anything else
        return False

    def _replace_producer(self, failed: ProducerFailedError) -> None:
        """A new producer under the same transactional id: ``init_transactions`` bumps the epoch
        and aborts whatever the failed one left open."""
        logger.warning("%s: the producer failed for good (%s); replacing it", self.name, failed)
        producer = transactions.transactional_producer(
            self.settings, self.transactional_id, self.config.transaction_timeout_ms
        )
        transactions.init_with_retries(producer)
        self.producer = producer

    def _stop_if_refused(self, exc: Exception) -> None:
        """Authorization and authentication errors end the loop: no retry cures them."""
        reason = refusal(exc, reported=False)
        if reason is not None:
            raise AccessDeniedError(
                f"{self.name} (group {self.group}, transactional id {self.transactional_id}) "
                "was refused by the cluster; check its principal's ACLs (ridestream kafka acls)",
                reason,
            ) from exc

    def _cycle(
        self, consumer: Consumer, batches: Batches, messages: list[Message], rebalances: int
    ) -> None:
        prepared = self._prepare(messages)
        while prepared and self.takes_another([p.consumed for p in prepared]):
            more = batches.ready()
            if not more:
                break
            prepared += self._prepare(more)
        self._settle()
        if not prepared:
            return
        if self.membership.rebalances != rebalances:
            rewind_to_committed(consumer)  # read across a rebalance: read it again
            return
        self._publish(prepared)

    def _prepare(self, messages: list[Message]) -> list[_Prepared[P]]:
        if not messages and not self.config.empty_batches:
            return []
        for msg in messages:
            if msg.error():
                raise KafkaException(msg.error())
        work = self.work.prepare(messages)
        return [] if work is None else [_Prepared(len(messages), work)]

    def _publish(self, prepared: list[_Prepared[P]]) -> None:
        assert self.consumer is not None
        assert self.producer is not None
        producer = self.producer
        producer.begin_transaction()
        self.work.publish(producer, [p.work for p in prepared])
        if self.config.overlap:
            commit = transactions.CommitInFlight(producer, self.consumer, self._commits)
            self._committing = _Committing(commit, prepared)
        else:
            seconds = transactions.commit(producer, self.consumer)
            self.work.committed([p.work for p in prepared], seconds)

    def takes_another(self, consumed: list[int]) -> bool:
        """Whether the transaction in the making takes another batch, if one has already arrived
        (``consumed``: the messages of each batch it has): while the previous transaction still
        commits (the loop would only wait for it), or under a backlog (the last batch was full),
        up to ``transaction_max_batches``. Never without ``overlap``."""
        config = self.config
        if not config.overlap or len(consumed) >= config.transaction_max_batches:
            return False
        if consumed[-1] >= config.batch_max_messages:
            return True
        committing = self._committing
        return committing is not None and not committing.commit.done()

    def _settle(self) -> None:
        """Wait for the transaction being committed, then tell the work; raises its error."""
        committing, self._committing = self._committing, None
        if committing is not None:
            try:
                seconds = committing.commit.wait(self.config.commit_timeout_s)
            except KafkaException:
                if not committing.commit.done():  # stuck: later commits need a thread of their own
                    self._commits.shutdown()
                    self._commits = transactions.CommitThread(f"{self.name}-commit")
                raise
            self.work.committed([p.work for p in committing.batches], seconds)

    def _abort_and_rewind(self, exc: Exception) -> None:
        assert self.consumer is not None
        assert self.producer is not None
        reason = transactions.abort(self.producer, exc)
        self._rewind_pending = True
        self._rewind(self.consumer)  # when it fails, the loop retries it before reading again
        self.work.aborted(reason)

    def _rewind(self, consumer: Consumer) -> bool:
        """A pending rewind to the committed offsets; False while it still fails."""
        try:
            rewind_to_committed(consumer)
        except KafkaException as exc:
            logger.warning("rewind still failing (%s); waiting", exc)
            return False
        self._rewind_pending = False
        return True
