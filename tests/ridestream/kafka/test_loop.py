"""How the exactly-once loop sizes its transactions: pure logic, no broker."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from ridestream.kafka import transactions
from ridestream.kafka.exceptions import ProducerFailedError
from ridestream.kafka.loop import ExactlyOnceLoop, _Committing, group_name
from ridestream.kafka.loop_config import LoopConfig
from tests.conftest import make_settings


class Commit:
    """A commit that has or has not ended (what the loop asks of one)."""

    def __init__(self, ended: bool) -> None:
        self.ended = ended

    def done(self) -> bool:
        return self.ended


def loop(
    max_batches: int = 4, committing: bool | None = None, overlap: bool = True
) -> ExactlyOnceLoop[Any]:
    config = LoopConfig(
        batch_max_messages=100,
        batch_max_wait_s=0.1,
        batch_linger_s=0.0,
        retry_backoff_s=0.1,
        retry_backoff_max_s=1.0,
        transaction_timeout_ms=10_000,
        transaction_max_batches=max_batches,
        overlap=overlap,
    )
    # Never connects: nothing here talks to a broker.
    made: ExactlyOnceLoop[Any] = ExactlyOnceLoop(
        make_settings("127.0.0.1:1"),
        cast(Any, object()),
        config,
        group="g",
        transactional_id="g.0",
        topics=["t"],
        name="test",
    )
    if committing is not None:
        made._committing = _Committing(cast(Any, Commit(ended=not committing)), [])
    return made


@pytest.mark.parametrize(
    ("sizes", "committing", "takes_another"),
    [
        ((100,), None, True),  # a full batch: a backlog
        ((100, 100, 100), False, True),
        ((100, 100, 100, 100), True, False),  # the setting's limit
        ((40,), None, False),  # a moderate rate, nothing committing: produce at once
        ((40,), False, False),
        ((40,), True, True),  # the loop would only wait for the commit
        ((100, 40), False, False),  # the backlog is worked off
    ],
)
def test_a_transaction_takes_another_batch_under_a_backlog_or_while_one_commits(
    sizes: tuple[int, ...], committing: bool | None, takes_another: bool
) -> None:
    assert loop(committing=committing).takes_another(list(sizes)) is takes_another


@pytest.mark.parametrize("committing", [None, True])
def test_one_batch_a_transaction_when_the_setting_says_so(committing: bool | None) -> None:
    assert not loop(max_batches=1, committing=committing).takes_another([100])


def test_without_overlap_every_batch_is_its_own_transaction() -> None:
    assert not loop(overlap=False, committing=True).takes_another([100])


def test_group_names_carry_the_topic_prefix() -> None:
    settings = make_settings("127.0.0.1:1", prefix="tenant-a.")
    assert group_name(settings, "predictor", "tip") == "tenant-a.ridestream.predictor.tip"
    assert group_name(settings, "decisions") == "tenant-a.ridestream.decisions"


class Work:
    """Records what the loop tells the work."""

    def __init__(self) -> None:
        self.aborts: list[str] = []

    def aborted(self, reason: str) -> None:
        self.aborts.append(reason)


class Producer:
    def abort_transaction(self, timeout: float) -> None:
        pass


class Consumer:
    """A consumer in the middle of a rebalance: seeking fails until ``settled``."""

    def __init__(self) -> None:
        self.settled = False
        self.seeks: list[Any] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", 0)]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition("t", 0, 42)]

    def seek(self, partition: TopicPartition) -> None:
        if not self.settled:
            raise KafkaException(KafkaError(KafkaError._STATE))
        self.seeks.append((partition.partition, partition.offset))


def test_a_rewind_that_fails_in_a_rebalance_is_retried_before_anything_else() -> None:
    made = loop()
    work, consumer = Work(), Consumer()
    made.work = cast(Any, work)
    made.consumer, made.producer = cast(Any, consumer), cast(Any, Producer())
    made._abort_and_rewind(KafkaException(KafkaError(KafkaError._TRANSPORT)))  # no crash
    assert made._rewind_pending
    assert work.aborts == ["_TRANSPORT"]
    assert not made._rewind(cast(Any, consumer))  # still in the rebalance: still pending
    assert made._rewind_pending
    consumer.settled = True
    assert made._rewind(cast(Any, consumer))
    assert not made._rewind_pending
    assert consumer.seeks == [(0, 42)]  # back to the committed offset


class FailedProducer:
    """A producer whose abort fails for good, fenced or not."""

    def __init__(self, code: int) -> None:
        self.code = code

    def abort_transaction(self, timeout: float) -> None:
        raise KafkaException(KafkaError(self.code, "Failed to end transaction", fatal=True))


class FreshProducer(Producer):
    def __init__(self) -> None:
        self.initialized = False

    def init_transactions(self, timeout: float) -> None:
        self.initialized = True


def test_a_producer_that_failed_for_good_is_replaced_and_the_batch_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = loop()
    consumer, fresh = Consumer(), FreshProducer()
    consumer.settled = True
    made.work = cast(Any, Work())
    made.consumer, made.producer = cast(Any, consumer), cast(Any, FailedProducer(48))
    monkeypatch.setattr(transactions, "transactional_producer", lambda *args: fresh)
    # The coordinator lost the transaction when its broker died: INVALID_TXN_STATE, fatal.
    replaced_consumer = made._recover(KafkaException(KafkaError(KafkaError.NOT_COORDINATOR)))
    assert not replaced_consumer
    assert made.producer is fresh
    assert fresh.initialized  # the new epoch aborts what the old producer left open
    assert made._rewind_pending  # nothing is read or published before the rewind


def test_a_fenced_producer_stops_the_loop() -> None:
    made = loop()
    made.work = cast(Any, Work())
    made.consumer = cast(Any, Consumer())
    made.producer = cast(Any, FailedProducer(KafkaError._FENCED))
    with pytest.raises(ProducerFailedError) as raised:
        made._recover(KafkaException(KafkaError(KafkaError._TRANSPORT)))
    assert raised.value.fenced


class StuckProducer:
    """A producer whose offsets call never returns (as librdkafka's once did, a broker away)."""

    def __init__(self) -> None:
        self.released = threading.Event()

    def send_offsets_to_transaction(self, offsets: Any, group: Any, timeout: float) -> None:
        self.released.wait()


class PositionedConsumer:
    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", 0)]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition("t", 0, 7)]

    def consumer_group_metadata(self) -> object:
        return object()


def test_a_commit_that_never_returns_is_a_fatal_timeout_and_later_commits_run_on() -> None:
    commits = transactions.CommitThread("test-commit")
    producer = StuckProducer()
    stuck = transactions.CommitInFlight(
        cast(Any, producer), cast(Any, PositionedConsumer()), commits
    )
    with pytest.raises(KafkaException) as raised:
        stuck.wait(0.2)
    error = raised.value.args[0]
    assert error.code() == KafkaError._TIMED_OUT
    assert error.fatal()  # so the loop replaces the producer (transactions.abort)
    # A fresh commit thread serves the next commits meanwhile; the stuck one is a daemon.
    fresh = transactions.CommitThread("test-commit-2")
    assert fresh.submit(lambda: 1.5).result(5) == 1.5
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("test-commit"))
    producer.released.set()
    commits.shutdown()
    fresh.shutdown()
