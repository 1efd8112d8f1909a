"""Settling a publication a crash interrupted, between the store's claim and its confirmation.

A decision is claimed under a token with the decisions topic's end offsets before the Kafka
transaction that publishes it; if the process dies before the store hears the transaction
committed, the next start (after fencing the old transactional id) reads the topic from those
offsets, read_committed, and marks the decisions it finds carrying the token published; the rest
is published again.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]  # no __all__ there
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from ridestream.exceptions import RidestreamError
from ridestream.kafka import dlq
from ridestream.kafka.clients import consumer_config, is_transient, make_admin, unique_group_id
from ridestream.settings import Settings
from ridestream.store.decisions import DecisionStore

logger = logging.getLogger(__name__)

CLAIM_HEADER = "ridestream.publish.claim"


class PublicationRecovery:
    """Reads the decisions topic to settle one instance's interrupted claim."""

    def __init__(self, settings: Settings, store: DecisionStore, group: str) -> None:
        self.settings, self.store, self.group = settings, store, group
        self.config = settings.decisions
        self.decisions_topic = settings.topics.full("decisions")

    def recover(self) -> None:
        """Settle the publication a crash left between the store's claim and its confirmation."""
        claim = self.store.in_flight(self.config.instance_id)
        if claim is None:
            return
        token, start = claim
        published = self._published_with(token, start)
        logger.warning(
            "resolving an interrupted publication: %d decisions had been published", len(published)
        )
        self.store.settle(self.config.instance_id, token, published)

    def _published_with(self, token: str, start: dict[int, int]) -> set[str]:
        """Ride ids of the committed decisions carrying ``token``, read from ``start`` to the end."""
        reader = Consumer(
            consumer_config(
                self.settings,
                unique_group_id(f"{self.group}.recovery"),
                **{"enable.partition.eof": True},
            )
        )
        try:
            ends = self.end_offsets()
            remaining = {p for p in start if ends[p] > start[p]}
            reader.assign([TopicPartition(self.decisions_topic, p, start[p]) for p in remaining])
            published: set[str] = set()
            # Open transactions of other replicas can hold the stable offset back for at most
            # their transaction timeout.
            deadline = time.monotonic() + self.config.transaction_timeout_ms / 1000 + 30
            while remaining:
                if time.monotonic() > deadline:
                    raise RidestreamError(
                        f"could not read {self.decisions_topic} to its end to settle publication "
                        f"{token}; refusing to guess (partitions {sorted(remaining)})"
                    )
                msg = reader.poll(0.5)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        if (msg.offset() or 0) >= ends[msg.partition() or 0]:
                            remaining.discard(msg.partition() or 0)
                        continue
                    raise KafkaException(error)
                if dlq.header(msg, CLAIM_HEADER) == token:
                    published.add((msg.key() or b"").decode())
            return published
        finally:
            reader.close()

    @retry(
        # A leader being elected (a new topic, a broker restart) is a moment, not a failure.
        retry=retry_if_exception(is_transient),
        stop=stop_after_delay(60),
        wait=wait_exponential(multiplier=0.2, max=5),
        reraise=True,
    )
    def end_offsets(self) -> dict[int, int]:
        """The decisions topic's end offset per partition, in one admin request."""
        admin = make_admin(self.settings)
        topic = self.decisions_topic
        partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
        futures = admin.list_offsets(
            {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},
            request_timeout=10,
        )
        return {tp.partition: future.result().offset for tp, future in futures.items()}
