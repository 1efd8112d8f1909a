"""Read a topic from the beginning and turn each message into a JSON-ready dict (``ridestream tail``)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaException

from ridestream.contracts.schemas import DECISION, PREDICTION, RIDE_COMPLETED, RIDE_STARTED
from ridestream.kafka.clients import batches_until_idle, consumer_config, unique_group_id
from ridestream.kafka.exceptions import KafkaOperationError
from ridestream.serde.codecs import Serde, make_serde
from ridestream.serde.exceptions import DecodeError
from ridestream.settings import Settings

RECORD_OF_ROLE = {
    "started": RIDE_STARTED,
    "completed": RIDE_COMPLETED,
    "predictions": PREDICTION,
    "decisions": DECISION,
}


def serde_for_topic(settings: Settings, topic: str) -> Serde | None:
    """The serde of a project topic's values; None for the DLQ and unknown topics (raw bytes)."""
    for role, name in settings.topics.names().items():
        if name == topic and role in RECORD_OF_ROLE:
            return make_serde(RECORD_OF_ROLE[role], settings)
    return None


def read_topic(
    settings: Settings,
    topic: str,
    limit: int | None = None,
    idle_timeout_s: float = 5.0,
    from_beginning: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yield decoded messages until ``limit`` or ``idle_timeout_s`` without a new message."""
    serde = serde_for_topic(settings, topic)
    consumer = Consumer(
        consumer_config(
            settings,
            unique_group_id("ridestream-tail"),
            **{"auto.offset.reset": "earliest" if from_beginning else "latest"},
        )
    )
    consumer.subscribe([topic])
    seen = 0
    try:
        for batch in batches_until_idle(consumer, idle_timeout_s, batch_size=100):
            for msg in batch:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield describe(msg, serde)
    except KafkaException as exc:
        raise KafkaOperationError(f"reading {topic}", exc.args[0]) from exc
    finally:
        consumer.close()


def describe(msg: Any, serde: Serde | None) -> dict[str, Any]:
    """One message as a dict: coordinates, key, headers and the decoded (or raw) value."""
    key = msg.key()
    out: dict[str, Any] = {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": key.decode("utf-8", "replace") if isinstance(key, bytes) else key,
    }
    if msg.headers():
        out["headers"] = {k: (v.decode("utf-8", "replace") if v else v) for k, v in msg.headers()}
    value = msg.value()
    if value is None:  # a tombstone: nothing to decode
        out["value"] = None
        return out
    if serde is None:
        out["value_base64"] = base64.b64encode(value or b"").decode()
        return out
    try:
        out["value"] = serde.decode(value, msg.topic())
    except DecodeError as exc:
        out["error"] = {"kind": exc.kind, "message": str(exc)}
        out["value_base64"] = base64.b64encode(value or b"").decode()
    return out
