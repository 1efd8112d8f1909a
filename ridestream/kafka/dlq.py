"""The dead-letter topic: what could not be processed, with its original key and bytes and headers
saying why and where from, so nothing is lost and an operator can replay it after a fix.

Headers (all UTF-8): ``ridestream.error.kind`` (a stable reason code such as ``corrupt_payload``,
``unknown_schema``, ``invalid_value``), ``ridestream.error.message``, ``ridestream.source.topic``,
``ridestream.source.partition``, ``ridestream.source.offset``, ``ridestream.consumer.group``,
``ridestream.failed_at`` (ISO 8601, UTC). The message's own headers are kept in front of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, Message

from ridestream.kafka.clients import batches_until_idle, consumer_config, producer_config
from ridestream.kafka.producer import ReliableProducer
from ridestream.settings import Settings

logger = logging.getLogger(__name__)

PREFIX = "ridestream."
KIND = PREFIX + "error.kind"
MESSAGE = PREFIX + "error.message"
SOURCE_TOPIC = PREFIX + "source.topic"
SOURCE_PARTITION = PREFIX + "source.partition"
SOURCE_OFFSET = PREFIX + "source.offset"
GROUP = PREFIX + "consumer.group"
FAILED_AT = PREFIX + "failed_at"
MAX_MESSAGE = 2000  # characters of the error kept in a header


@dataclass(frozen=True)
class DeadLetter:
    """One message that failed, and why."""

    msg: Message
    kind: str
    message: str


def _pairs(msg: Message) -> list[tuple[str, bytes | None]]:
    """A message's headers as (name, bytes) pairs, whatever shape the client returned."""
    raw: Any = msg.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), v.encode() if isinstance(v, str) else v) for k, v in items]


def headers_for(letter: DeadLetter, group: str) -> list[tuple[str, bytes]]:
    """The original headers plus ours, ready to produce."""
    msg = letter.msg
    original = [(k, v or b"") for k, v in _pairs(msg) if not k.startswith(PREFIX)]
    ours = {
        KIND: letter.kind,
        MESSAGE: letter.message[:MAX_MESSAGE],
        SOURCE_TOPIC: msg.topic() or "",
        SOURCE_PARTITION: str(msg.partition()),
        SOURCE_OFFSET: str(msg.offset()),
        GROUP: group,
        FAILED_AT: datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    return original + [(key, value.encode()) for key, value in ours.items()]


def header(msg: Message, name: str) -> str | None:
    """One header of a message as text (the last one of that name), or None."""
    found = None
    for key, value in _pairs(msg):
        if key == name and value is not None:
            found = value.decode("utf-8", "replace")
    return found


def original_headers(msg: Message) -> list[tuple[str, str | bytes | None]]:
    """A dead letter's headers without ours: what to send when replaying it."""
    return [(k, v) for k, v in _pairs(msg) if not k.startswith(PREFIX)]


def replay(
    settings: Settings,
    *,
    kinds: set[str] | None = None,
    limit: int | None = None,
    idle_timeout_s: float = 5.0,
) -> dict[str, int]:
    """Re-publish dead letters to the topic they came from (after a fix), once each.

    Reads the DLQ in its own consumer group (``<prefix>ridestream.dlq-replay``), so a letter is
    replayed once however often this runs; offsets are committed only after the re-published
    messages are acknowledged. ``kinds`` limits the replay to some error kinds (the others are
    counted as skipped and passed over: this group will not offer them again).
    """
    topic = settings.topics.full("dlq")
    consumer = Consumer(consumer_config(settings, f"{settings.topics.prefix}ridestream.dlq-replay"))
    producer = ReliableProducer(producer_config(settings))
    counts = {"replayed": 0, "skipped": 0}
    consumer.subscribe([topic])
    try:
        for batch in batches_until_idle(consumer, idle_timeout_s, batch_size=500):
            for msg in batch:
                source = header(msg, SOURCE_TOPIC)
                if source is None or (kinds is not None and header(msg, KIND) not in kinds):
                    counts["skipped"] += 1
                    continue
                producer.produce(source, msg.value(), msg.key(), headers=original_headers(msg))
                counts["replayed"] += 1
            producer.flush(60)
            # Offsets are stored by hand in our consumers; commit where this batch ends.
            consumer.commit(offsets=consumer.position(consumer.assignment()), asynchronous=False)
            if limit is not None and counts["replayed"] >= limit:
                break
    finally:
        consumer.close()
    logger.info("dlq replay: %s", counts)
    return counts
