"""What a stalled stream looks like from the cluster's side, for a failing test's message.

Per partition of the project's topics: its leader, in-sync replicas, high watermark and last
stable offset (a transaction left open holds the LSO, and every read_committed reader with it);
per consumer group: its committed offsets; and Kafka's own view of the open transactions.
"""

from __future__ import annotations

import subprocess

from confluent_kafka import Consumer, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from ridestream.kafka.clients import common_config, make_admin
from ridestream.kafka.distribution import java_executable
from ridestream.kafka.local import LocalKafka
from ridestream.settings import Settings


def _offsets(admin: AdminClient, partitions: list[TopicPartition], committed: bool) -> list[int]:
    level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    futures = admin.list_offsets(
        {tp: OffsetSpec.latest() for tp in partitions}, isolation_level=level, request_timeout=10
    )
    return [futures[tp].result().offset for tp in partitions]


def _committed(settings: Settings, group: str, partitions: list[TopicPartition]) -> list[int]:
    # A consumer that never subscribes does not join the group: it only asks its coordinator.
    consumer = Consumer({**common_config(settings), "group.id": group})
    try:
        return [tp.offset for tp in consumer.committed(partitions, timeout=10)]
    finally:
        consumer.close()


def _kafka_tool(cluster: LocalKafka, main: str, *args: str) -> str:
    command = [str(java_executable()), "-Xmx256m", "-cp", cluster.classpath(), main]
    command += ["--bootstrap-server", cluster.bootstrap, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return (done.stdout + done.stderr).strip()


def describe(cluster: LocalKafka, settings: Settings, reads: list[tuple[str, str]]) -> str:
    """The partitions each (group, topic short name) of ``reads`` reads, and the transactions."""
    admin = make_admin(settings)
    lines: list[str] = []
    try:
        for group, short in reads:
            topic = settings.topics.full(short)
            meta = admin.list_topics(topic, timeout=10).topics[topic].partitions
            partitions = [TopicPartition(topic, p) for p in sorted(meta)]
            ends = _offsets(admin, partitions, committed=False)
            stable = _offsets(admin, partitions, committed=True)
            done = _committed(settings, group, partitions)
            lines.append(f"{topic} read by {group}: partition leader isr end lso committed")
            for tp, end, lso, at in zip(partitions, ends, stable, done, strict=True):
                info = meta[tp.partition]
                mark = "" if at >= lso else "  <- behind"
                lines.append(
                    f"  {tp.partition:>3} {info.leader:>6} {info.isrs!s:>9} {end:>7} {lso:>7}"
                    f" {at:>9}{mark}"
                )
    except Exception as exc:  # diagnostics must not hide the failure they describe
        lines.append(f"(offsets unavailable: {exc!r})")
    tools = "org.apache.kafka.tools.TransactionsCommand"
    lines.append("open transactions (kafka-transactions.sh list):")
    lines.append(_kafka_tool(cluster, tools, "list"))
    for node in cluster.nodes:
        lines.append(f"hanging on node {node.node_id} (find-hanging):")
        lines.append(_kafka_tool(cluster, tools, "find-hanging", "--broker-id", str(node.node_id)))
    return "\n".join(lines)
