from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer

from producers.subscriber import (
    HANDLER_FAILED,
    LATEST,
    AsyncDecisionSubscriber,
    DecisionSubscriber,
)
from ridestream.contracts.events import Decision, ModelRef, Prediction, utc_now
from ridestream.contracts.schemas import DECISION, PREDICTION
from ridestream.kafka import dlq
from ridestream.kafka.clients import producer_config
from ridestream.serde.codecs import make_serde
from ridestream.settings import Settings
from tests.helpers import consume_all


def decision(ride_id: str) -> Decision:
    return Decision(
        ride_id=ride_id,
        quote=21.5,
        duration_minutes=14.0,
        expected_tip=3.1,
        actions=["none"],
        models=[ModelRef(target="cost", model_name="ride-cost", model_version="3")],
    )


def publish_decisions(
    settings: Settings,
    ride_ids: list[str],
    *,
    abort: tuple[str, ...] = (),
    raw: dict[str, bytes] | None = None,
) -> None:
    """Decisions as the decision service publishes them: in a Kafka transaction. ``abort`` ones
    in a transaction that is aborted; ``raw`` as bytes that are not a decision."""
    serde = make_serde(DECISION, settings)
    topic = settings.topics.full("decisions")
    producer = Producer(producer_config(settings, **{"transactional.id": uuid.uuid4().hex}))
    producer.init_transactions(30)
    if abort:
        producer.begin_transaction()
        for ride_id in abort:
            producer.produce(topic, serde.encode(decision(ride_id).to_record(), topic), ride_id)
        producer.abort_transaction(30)
    producer.begin_transaction()
    for ride_id in ride_ids:
        value = (raw or {}).get(ride_id) or serde.encode(decision(ride_id).to_record(), topic)
        producer.produce(topic, value, ride_id)
    producer.commit_transaction(30)


def read_until(subscriber: DecisionSubscriber, handler, done, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out reading the decisions"
        subscriber.poll(handler, timeout_s=0.5)


@pytest.mark.kafka
def test_committed_decisions_arrive_decoded_and_a_restarted_subscriber_resumes_after_them(
    kafka_settings: Settings,
) -> None:
    first = [f"r-{i}" for i in range(50)]
    publish_decisions(kafka_settings, first, abort=("aborted-1", "aborted-2"))
    seen: list[Decision] = []
    with DecisionSubscriber(kafka_settings, "dispatch") as subscriber:
        read_until(subscriber, seen.append, lambda: len(seen) >= 50)
        subscriber.poll(seen.append, timeout_s=1.0)  # anything beyond the 50 would show here
    assert sorted(d.ride_id for d in seen) == sorted(first)  # the aborted ones never arrive
    assert all(isinstance(d, Decision) and d.quote == 21.5 for d in seen)
    assert seen[0].models[0].model_version == "3"

    publish_decisions(kafka_settings, ["r-50", "r-51"])
    again: list[Decision] = []
    with DecisionSubscriber(kafka_settings, "dispatch") as subscriber:
        read_until(subscriber, again.append, lambda: len(again) >= 2)
        subscriber.poll(again.append, timeout_s=1.0)
    assert sorted(d.ride_id for d in again) == ["r-50", "r-51"]  # the handled ones were committed

    other: list[Decision] = []
    with DecisionSubscriber(kafka_settings, "pricing") as subscriber:  # a group of its own
        read_until(subscriber, other.append, lambda: len(other) >= 52)
    assert len(other) == 52


@pytest.mark.kafka
def test_a_failing_handler_is_retried_then_dead_lettered_and_the_stream_goes_on(
    kafka_settings: Settings,
) -> None:
    publish_decisions(
        kafka_settings, ["ok-1", "poison", "garbled", "ok-2"], raw={"garbled": b"not avro"}
    )
    attempts: dict[str, int] = {}
    handled: list[str] = []

    def handler(event: Decision | Prediction) -> None:
        attempts[event.ride_id] = attempts.get(event.ride_id, 0) + 1
        if event.ride_id == "poison":
            raise RuntimeError("pricing backend said no")
        handled.append(event.ride_id)

    with DecisionSubscriber(kafka_settings, "notify", retries=2, backoff_s=0.01) as subscriber:
        read_until(subscriber, handler, lambda: len(handled) == 2 and subscriber.dead_letters == 2)
    assert sorted(handled) == ["ok-1", "ok-2"]  # in order per partition, not across them
    assert attempts["poison"] == 3  # the first try and two retries
    letters = consume_all(kafka_settings, kafka_settings.topics.full("dlq"), expected=2)
    by_key = {m.key().decode(): m for m in letters}
    assert dlq.header(by_key["poison"], dlq.KIND) == HANDLER_FAILED
    assert "pricing backend said no" in (dlq.header(by_key["poison"], dlq.MESSAGE) or "")
    assert dlq.header(by_key["garbled"], dlq.KIND) != HANDLER_FAILED
    assert by_key["garbled"].value() == b"not avro"  # the original bytes, for a replay
    assert dlq.header(by_key["poison"], dlq.GROUP) == subscriber.group_id


@pytest.mark.kafka
def test_a_subscriber_from_latest_skips_what_was_published_before_it_was_assigned(
    kafka_settings: Settings,
) -> None:
    publish_decisions(kafka_settings, ["old"])
    assigned = threading.Event()
    seen: list[str] = []
    with DecisionSubscriber(
        kafka_settings, "gw", start=LATEST, commit=False, on_assigned=lambda _: assigned.set()
    ) as subscriber:
        deadline = time.monotonic() + 30
        while not assigned.is_set():
            assert time.monotonic() < deadline
            subscriber.poll(lambda e: seen.append(e.ride_id), timeout_s=0.2)
        publish_decisions(kafka_settings, ["new"])
        read_until(subscriber, lambda e: seen.append(e.ride_id), lambda: "new" in seen)
    assert seen == ["new"]


@pytest.mark.kafka
def test_the_asyncio_subscriber_awaits_its_handler_for_decisions_and_predictions(
    kafka_settings: Settings,
) -> None:
    publish_decisions(kafka_settings, ["a-1", "a-2"])
    topic = kafka_settings.topics.full("predictions")
    serde = make_serde(PREDICTION, kafka_settings)
    prediction = Prediction(
        ride_id="a-1", target="tip", value=2.5, model_name="ride-tip", model_version="1",
        role="champion", source_event_id=uuid.uuid4(), source_event_time=utc_now(),
        pickup_time=datetime(2023, 2, 1, 8, 0),
    )  # fmt: skip
    producer = Producer(producer_config(kafka_settings))
    producer.produce(topic, serde.encode(prediction.to_record(), topic), "a-1")
    producer.flush(30)

    async def main() -> list[Decision | Prediction]:
        seen: list[Decision | Prediction] = []

        async def handler(event: Decision | Prediction) -> None:
            await asyncio.sleep(0)
            seen.append(event)
            if len(seen) == 3:
                subscriber.stop()

        async with AsyncDecisionSubscriber(kafka_settings, "async", predictions=True) as subscriber:
            await asyncio.wait_for(subscriber.run(handler, poll_timeout_s=0.2), timeout=60)
        return seen

    seen = asyncio.run(main())
    assert sorted(e.ride_id for e in seen if isinstance(e, Decision)) == ["a-1", "a-2"]
    tips = [e for e in seen if isinstance(e, Prediction)]
    assert [(t.target, t.value) for t in tips] == [("tip", 2.5)]


@pytest.mark.kafka
def test_the_documented_example_acts_on_each_decision_once_and_stops_cleanly_on_sigterm(
    kafka_settings: Settings,
) -> None:
    env = {
        **os.environ,
        "RIDESTREAM_KAFKA_BOOTSTRAP": kafka_settings.bootstrap_servers,
        "RIDESTREAM_TOPICS__PREFIX": kafka_settings.topics.prefix,
    }
    example = Path(__file__).parents[2] / "docs" / "examples" / "dispatch.py"

    def run_until(expected: list[str]) -> list[str]:
        process = subprocess.Popen(
            [sys.executable, str(example)], env=env, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        lines = []
        try:
            while len(lines) < len(expected):
                line = process.stdout.readline()
                assert line, f"the example ended early, exit {process.wait()}"
                lines.append(line.split(":")[0])
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            process.kill()
        return lines

    publish_decisions(kafka_settings, ["d-1", "d-2"])
    assert sorted(run_until(["d-1", "d-2"])) == ["dispatch d-1", "dispatch d-2"]
    publish_decisions(kafka_settings, ["d-3"])
    assert run_until(["d-3"]) == ["dispatch d-3"]  # resumed after what it had committed
