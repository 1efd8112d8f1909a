"""A local three-node cluster, as `ridestream kafka start --brokers 3` runs it: replicated topics
that survive a node, and producers told the truth when two are gone."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from ridestream.kafka.clients import consumer_config, producer_config
from ridestream.kafka.exceptions import DeliveryError
from ridestream.kafka.local import LocalKafka
from ridestream.kafka.producer import ReliableProducer
from ridestream.kafka.topics import create_project_topics
from ridestream.settings import Settings, TopicSettings
from tests.conftest import local_cluster_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    local = LocalKafka(local_cluster_settings(tmp_path_factory.mktemp("cluster"), brokers=3))
    local.start()
    try:
        yield local
    finally:
        local.stop()


def settings_for(local: LocalKafka, **options: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        local_kafka=local.settings,
        topics=TopicSettings(prefix=f"c{uuid.uuid4().hex[:8]}.", partitions=3),
        **options,
    )


def wait_for(read: Callable[[], T], seconds: float = 30.0) -> T:
    """What ``read`` returns once it is not empty (metadata reaches every node in a moment)."""
    deadline = time.monotonic() + seconds
    while not (found := read()):
        assert time.monotonic() < deadline, "still empty"
        time.sleep(0.2)
    return found


def values(settings: Settings, topic: str) -> set[bytes]:
    consumer = Consumer(
        consumer_config(settings, f"count-{uuid.uuid4().hex[:8]}", **{"enable.partition.eof": True})
    )
    consumer.subscribe([topic])
    seen: set[bytes] = set()
    ended: set[int] = set()
    try:
        while len(ended) < 3:
            msg = consumer.poll(10)
            assert msg is not None, "the topic did not end"
            if msg.error():
                ended.add(msg.partition())
                continue
            seen.add(msg.value() or b"")
    finally:
        consumer.close()
    return seen


def test_three_nodes_answer_and_topics_are_replicated_three_times(cluster: LocalKafka) -> None:
    status = cluster.status()
    assert [node.answers for node in status.nodes] == [True, True, True]
    assert status.bootstrap.count(",") == 2
    settings = settings_for(cluster)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    assert all(create_project_topics(settings, admin).values())
    topic = settings.topics.full("started")
    partitions = wait_for(lambda: admin.list_topics(topic, timeout=10).topics[topic].partitions)
    assert len(partitions) == 3
    assert {len(p.replicas) for p in partitions.values()} == {3}
    [config] = admin.describe_configs([ConfigResource("topic", topic)]).values()
    assert config.result()["min.insync.replicas"].value == "2"


def test_a_lost_node_loses_nothing_and_two_lost_nodes_are_an_error_not_a_lie(
    cluster: LocalKafka,
) -> None:
    settings = settings_for(cluster)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    create_project_topics(settings, admin)
    topic = settings.topics.full("started")

    def send(first: int, n: int, timeout_ms: int = 60_000) -> ReliableProducer:
        producer = ReliableProducer(producer_config(settings, **{"message.timeout.ms": timeout_ms}))
        for i in range(first, first + n):
            producer.produce(topic, f"ride-{i}".encode(), f"k{i}")
        return producer

    acknowledged = {f"ride-{i}".encode() for i in [*range(0, 2000), *range(3000, 4000)]}
    send(0, 1000).flush(60)
    # The node leading partition 0 goes, as a crash would: the other two carry on (the producer
    # waits out the election of new leaders).
    leader = wait_for(lambda: admin.list_topics(topic, timeout=10).topics[topic].partitions)[
        0
    ].leader
    cluster.kill(leader)
    send(1000, 1000).flush(90)
    # A second node goes: fewer in-sync replicas than min.insync.replicas. The producer says so
    # within its timeout and reports nothing delivered.
    second = next(n.node_id for n in cluster.nodes if n.node_id != leader)
    cluster.kill(second)
    refused = send(2000, 200, timeout_ms=8000)
    with pytest.raises(DeliveryError):
        refused.flush(30)
    assert refused.delivered == 0
    # The nodes come back and the stream resumes. Every acknowledged ride is there, once; what
    # timed out may or may not have been written (Kafka's "unknown"), never anything else.
    cluster.restart_after_crash()
    send(3000, 1000).flush(90)
    seen = values(settings, topic)
    assert acknowledged <= seen
    assert seen - acknowledged <= {f"ride-{i}".encode() for i in range(2000, 2200)}
