"""Topic administration: create the topics of the design, and count what they hold."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from tenacity import (
    retry,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from ridestream.kafka.clients import (
    cluster_metadata,
    common_config,
    is_transient,
    unique_group_id,
)
from ridestream.kafka.exceptions import KafkaOperationError
from ridestream.settings import Settings

logger = logging.getLogger(__name__)


def replication_for(
    admin: AdminClient, replication_factor: int | None, min_insync: int | None
) -> tuple[int, int]:
    """The replication factor and min.insync.replicas to create topics with: as given, else 3
    and 2 on a cluster of three or more brokers, 1 and 1 on a smaller one."""
    if replication_factor is None:
        brokers = len(cluster_metadata(admin, 10.0).brokers)
        replication_factor = 3 if brokers >= 3 else 1
    if min_insync is None:
        min_insync = 2 if replication_factor >= 3 else 1
    return replication_factor, min_insync


def create_topics(
    admin: AdminClient,
    names: list[str],
    partitions: int,
    replication_factor: int | None = None,
    timeout_s: float = 30.0,
    min_insync: int | None = None,
) -> dict[str, bool]:
    """Create topics that do not exist yet; returns name → True if created, False if it existed.
    Replication as :func:`replication_for` decides."""
    replicas, insync = replication_for(admin, replication_factor, min_insync)
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=replicas,
                config={"min.insync.replicas": str(insync)},
            )
            for name in names
        ],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    created: dict[str, bool] = {}
    for name, future in futures.items():
        try:
            future.result()
            created[name] = True
            logger.info(
                "created topic=%s partitions=%d replication=%d min.insync=%d",
                name, partitions, replicas, insync,
            )  # fmt: skip
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaOperationError(f"creating topic {name} failed", error) from exc
            created[name] = False
    return created


def create_project_topics(
    settings: Settings, admin: AdminClient, partitions: int | None = None
) -> dict[str, bool]:
    """Create every topic of the design (prefix applied) with the configured partitions."""
    return create_topics(
        admin,
        list(settings.topics.names().values()),
        partitions or settings.topics.partitions,
        settings.topics.replication_factor,
        min_insync=settings.topics.min_insync_replicas,
    )


def delete_topics(admin: AdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    """Delete topics; unknown ones are ignored."""
    for name, future in admin.delete_topics(names, operation_timeout=timeout_s).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise KafkaOperationError(f"deleting topic {name} failed", exc.args[0]) from exc


@dataclass(frozen=True)
class TopicSummary:
    """A topic's partitions and how many messages (offsets) it holds."""

    name: str
    partitions: int
    messages: int


@retry(
    retry=retry_if_exception(is_transient),
    stop=stop_after_attempt(10),
    wait=wait_exponential(multiplier=0.1, max=2),
    reraise=True,
)
def _watermarks(consumer: Consumer, partition: TopicPartition, timeout_s: float) -> tuple[int, int]:
    # A topic created a moment ago may not have a known leader yet: that is worth a retry.
    low, high = consumer.get_watermark_offsets(partition, timeout=timeout_s)
    return int(low), int(high)


class _LeadershipSettlingError(Exception):
    """A topic's metadata still carries a transient error (a leader is being elected)."""


@retry(
    retry=retry_if_exception_type(_LeadershipSettlingError),
    stop=stop_after_attempt(10),
    wait=wait_exponential(multiplier=0.1, max=2),
)
def _topic_metadata(admin: AdminClient, name: str, timeout_s: float) -> Any:
    """A topic's metadata once it is usable; None when the topic does not exist."""
    topic = cluster_metadata(admin, timeout_s).topics.get(name)
    if topic is None:
        return None
    if topic.error is not None:
        if topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return None
        raise _LeadershipSettlingError(str(topic.error))
    return topic


def summarize_topics(
    settings: Settings, names: list[str], timeout_s: float = 10.0
) -> list[TopicSummary]:
    """Partition count and high-minus-low watermark per topic (transaction markers included)."""
    admin = AdminClient(common_config(settings))
    consumer = Consumer(
        {**common_config(settings), "group.id": unique_group_id("ridestream-admin")}
    )
    summaries = []
    try:
        for name in names:
            topic = _topic_metadata(admin, name, timeout_s)
            if topic is None:  # no such topic: nothing to count
                continue
            total = 0
            for partition in topic.partitions:
                low, high = _watermarks(consumer, TopicPartition(name, partition), timeout_s)
                total += high - low
            summaries.append(TopicSummary(name, len(topic.partitions), total))
    finally:
        consumer.close()
    return summaries
