"""A loop's consumer-group membership: which partitions it holds, and when they moved."""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

logger = logging.getLogger(__name__)


def _names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{p.topic}[{p.partition}]" for p in partitions]


class Membership:
    """The rebalance callbacks of one consumer: what it holds, and a count of revocations and
    losses (a batch read across one is dropped). ``on_assignment`` hears every change."""

    def __init__(
        self, topics: list[str], on_assignment: Callable[[dict[str, int]], None] | None = None
    ) -> None:
        self.topics, self.on_assignment = topics, on_assignment
        self.rebalances = 0
        self._held: set[tuple[str, int]] = set()
        # The group has given this consumer its assignment (maybe none: more members than
        # partitions), so it serves what it holds.
        self.joined = False

    def subscribe(self, consumer: Consumer) -> None:
        """Join the group for the topics, with these callbacks."""
        consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    @property
    def assigned(self) -> dict[str, int]:
        """Partitions held, per topic."""
        counts = dict.fromkeys(self.topics, 0)
        for topic, _ in self._held:
            counts[topic] = counts.get(topic, 0) + 1
        return counts

    def left(self) -> None:
        """The consumer is gone (replaced): it holds nothing, and what it read is not published."""
        self.rebalances += 1
        self.joined = False
        self._changed(set())

    def _changed(self, held: set[tuple[str, int]]) -> None:
        self._held = held
        if self.on_assignment is not None:
            self.on_assignment(self.assigned)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Cooperative rebalancing hands over only what moves: ``partitions`` is what was added
        # (the client assigns them itself once this returns).
        logger.info("partitions assigned: %s", _names(partitions))
        self.joined = True
        self._changed(self._held | {(p.topic, p.partition) for p in partitions})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Rebalance callbacks run inside consume(): no transaction is open for producing then,
        # though the last one may still be committing on the loop's helper thread. It is not
        # waited for here (its offset commit may be refused until the rebalance ends): it commits
        # outputs and offsets together or not at all, the partitions' next owner reads committed
        # offsets only once no transaction holds them (read_committed asks for stable offsets),
        # and the loop aborts and rewinds if it failed.
        self.rebalances += 1
        logger.info("partitions revoked: %s", _names(partitions))
        self._changed(self._held - {(p.topic, p.partition) for p in partitions})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.rebalances += 1
        logger.warning("partitions lost (nothing is committed for them): %s", _names(partitions))
        self._changed(self._held - {(p.topic, p.partition) for p in partitions})
