from __future__ import annotations

import pytest

from ridestream.kafka import dlq
from ridestream.kafka.clients import producer_config
from ridestream.kafka.producer import ReliableProducer
from ridestream.settings import Settings
from tests.helpers import consume_all


@pytest.mark.kafka
def test_replay_republishes_chosen_letters_once_with_their_own_headers(
    kafka_settings: Settings,
) -> None:
    source = kafka_settings.topics.full("started")
    letters = {"a": "corrupt_payload", "b": "invalid_value"}
    with ReliableProducer(producer_config(kafka_settings)) as producer:
        for key, kind in letters.items():
            producer.produce(
                kafka_settings.topics.full("dlq"), f"bytes-{key}".encode(), key,
                headers=[("trace", b"t-1"), (dlq.KIND, kind.encode()), (dlq.SOURCE_TOPIC, source.encode())],
            )  # fmt: skip

    first = dlq.replay(kafka_settings, kinds={"corrupt_payload"}, idle_timeout_s=3)
    assert first == {"replayed": 1, "skipped": 1}
    [message] = consume_all(kafka_settings, source, expected=1, idle_timeout_s=3)
    assert (message.key(), message.value()) == (b"a", b"bytes-a")
    assert message.headers() == [("trace", b"t-1")]  # ours stripped, the original kept
    assert dlq.replay(kafka_settings, idle_timeout_s=3) == {
        "replayed": 0,
        "skipped": 0,
    }  # once each
