"""The predictor against a real broker and a real MLflow registry: exactly once, dead letters."""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest

from consumers.predictor import PredictionOutcome, Predictor
from producers.replay import replay
from ridestream.contracts.schemas import PREDICTION, RIDE_STARTED
from ridestream.kafka import dlq
from ridestream.kafka.clients import producer_config
from ridestream.kafka.producer import ReliableProducer
from ridestream.ml.features import FEATURES, build_features
from ridestream.ml.models import load_version
from ridestream.ml.registry import CHAMPION, MODEL_NAMES
from ridestream.ml.tlc import load_month, month_file
from ridestream.ml.tracking import mlflow_client
from ridestream.serde.codecs import MARKER, SingleObjectSerde
from ridestream.settings import Settings
from tests.conftest import mlflow_settings
from tests.helpers import consume_all, replay_started
from training.train import TrainResult

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def stream_settings(
    kafka_settings: Settings, trained: tuple[Settings, list[TrainResult]]
) -> Settings:
    """This test's topics on the session broker, models from the session's trained registry."""
    models = trained[0]
    return kafka_settings.model_copy(update={"mlflow": models.mlflow, "models": models.models})


@pytest.mark.cluster
def test_every_ride_is_predicted_exactly_once_with_the_champions_values(
    stream_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    rides = 3000
    replayed_at = time.time()
    replay_started(stream_settings, rides, "p-")
    predictor = Predictor(stream_settings, "duration")
    caplog.set_level(logging.INFO, logger="consumers.predictor")
    outcomes = run_until_predicted(predictor, rides)
    # It warmed up first; the made-up batch is neither counted nor published (below).
    assert "warmed up in" in caplog.text
    assert sum(o.predicted for o in outcomes) == rides
    # Every prediction's age (event time → committed) is in the latency histogram, in seconds.
    registry, labels = predictor.metrics.registry, {"target": "duration"}
    ages = registry.get_sample_value("ridestream_event_to_prediction_seconds_count", labels)
    total_age = registry.get_sample_value("ridestream_event_to_prediction_seconds_sum", labels)
    assert ages == rides
    assert 0 < total_age / rides < time.time() - replayed_at  # no event is older than the replay

    predictions = committed_predictions(stream_settings, rides)
    per_ride = Counter(p["ride_id"] for p in predictions)
    assert len(per_ride) == rides
    assert max(per_ride.values()) == 1
    assert {(p["target"], p["role"], p["model_name"]) for p in predictions} == {
        ("duration", CHAMPION, "ride-duration")
    }

    # The values are what the champion gives for the same rides offline (batch scoring's path).
    frame, _ = load_month(month_file("2023-02"))
    frame = frame.iloc[:rides]
    client = mlflow_client(stream_settings.mlflow)
    version = predictions[0]["model_version"]
    offline = load_version(
        client, MODEL_NAMES["duration"], version, CHAMPION, stream_settings.models
    ).predict(build_features(frame))
    by_id = {p["ride_id"]: p["value"] for p in predictions}
    np.testing.assert_allclose([by_id[f"p-{i:07d}"] for i in range(rides)], offline, rtol=1e-12)


@pytest.mark.parametrize("max_batches", [1, 4])
def test_a_backlog_commits_several_batches_a_transaction_up_to_the_setting(
    stream_settings: Settings, max_batches: int
) -> None:
    rides = 2000
    replay_started(stream_settings, rides, "t-")
    # A backlog in small batches: every batch is full, and the next one has already arrived.
    loop = stream_settings.predictor.model_copy(
        update={
            "batch_max_messages": 25,
            "batch_linger_s": 0,
            "transaction_max_batches": max_batches,
        }
    )
    predictor = Predictor(stream_settings.model_copy(update={"predictor": loop}), "duration")
    outcomes = run_until_predicted(predictor, rides)
    registry, labels = predictor.metrics.registry, {"target": "duration"}
    sample = registry.get_sample_value
    transactions = sample("ridestream_transaction_batches_count", labels)
    assert sample("ridestream_transaction_batches_sum", labels) == len(outcomes)
    assert sample("ridestream_transaction_commit_seconds_count", labels) == transactions
    at_most_max = sample(
        "ridestream_transaction_batches_bucket", {**labels, "le": f"{max_batches}.0"}
    )
    assert at_most_max == transactions  # never more than the setting
    if max_batches == 1:
        assert transactions == len(outcomes)
    else:
        assert transactions < len(outcomes)

    per_ride = Counter(p["ride_id"] for p in committed_predictions(stream_settings, rides))
    assert len(per_ride) == rides
    assert max(per_ride.values()) == 1


def committed_predictions(settings: Settings, rides: int) -> list[dict[str, Any]]:
    """The predictions a ``read_committed`` reader sees, decoded: read until ``rides`` have come,
    and a moment more, so a duplicate still shows."""
    messages = consume_all(settings, settings.topics.full("predictions"), expected=rides)
    serde = SingleObjectSerde(PREDICTION)
    return [serde.decode(m.value()) for m in messages]


def run_until_predicted(predictor: Predictor, rides: int) -> list[PredictionOutcome]:
    """Run a predictor until it has predicted ``rides`` (see :func:`run_until`)."""
    done = threading.Event()
    counted: list[int] = []

    def watch(outcome: PredictionOutcome) -> None:
        counted.append(outcome.predicted)
        if sum(counted) >= rides:
            done.set()

    return run_until(predictor, done, watch)


def run_until(predictor: Predictor, done: threading.Event, watch: Any) -> list[PredictionOutcome]:
    """Run a predictor in a thread until ``watch`` sets ``done`` (or two minutes pass), then stop it."""
    outcomes: list[PredictionOutcome] = []
    stop = threading.Event()
    failure: list[BaseException] = []

    def on_batch(outcome: PredictionOutcome) -> None:
        outcomes.append(outcome)
        watch(outcome)

    def run() -> None:
        try:
            predictor.run(stop, on_batch)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not done.is_set() and time.monotonic() < deadline and thread.is_alive():
        done.wait(0.2)
    stop.set()
    thread.join(timeout=60)
    assert not failure, failure
    return outcomes


def avro_body(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema, named_schemas={}), record)
    return buffer.getvalue()


def valid_record(ride_id: str, **changes: Any) -> dict[str, Any]:
    record = {
        "event_id": uuid.uuid4(), "ride_id": ride_id, "event_time": datetime.now(UTC), "source": "backend",
        "enhanced": False, "pickup_time": datetime(2023, 2, 1, 8, 30), "pickup_zone": 74, "dropoff_zone": 75,
        "trip_distance": 1.2, "passenger_count": 1, "vendor_id": 2, "rate_code": 1, "payment_type": 1, "trip_type": 1,
    }  # fmt: skip
    record.update(changes)
    return record


@pytest.mark.cluster
def test_poison_goes_to_the_dlq_with_its_reason_and_the_rest_is_predicted(
    stream_settings: Settings,
) -> None:
    started = SingleObjectSerde(RIDE_STARTED)
    topic = stream_settings.topics.full("started")
    good = [started.encode(valid_record(f"good-{i}")) for i in range(50)]
    wrong_type = SingleObjectSerde(PREDICTION).encode(
        {"ride_id": "w", "target": "tip", "value": 1.0, "model_name": "m", "model_version": "1", "role": "champion",
         "source_event_id": uuid.uuid4(), "source_event_time": datetime.now(UTC),
         "pickup_time": datetime(2023, 2, 1), "predicted_at": datetime.now(UTC)}
    )  # fmt: skip
    header = MARKER + started.schema.fingerprint
    poison = {
        "garbage": (b"\x00\xffnot avro at all", "bad_framing"),
        "truncated": (good[0][:-6], "corrupt_payload"),
        "unknown-fingerprint": (MARKER + b"\x01" * 8 + good[0][10:], "unknown_schema"),
        "wrong-type": (wrong_type, "wrong_record_type"),
        # Values the schema can carry but the contract forbids; written past our own validation.
        "negative-distance": (
            header + avro_body(started.schema.raw, valid_record("nd", trip_distance=-3.0)),
            "invalid_value",
        ),
        "zone-999": (
            header + avro_body(started.schema.raw, valid_record("z", pickup_zone=999)),
            "invalid_value",
        ),
        "forty-passengers": (
            header + avro_body(started.schema.raw, valid_record("p", passenger_count=40)),
            "invalid_value",
        ),
    }
    poisoned = list(poison.items())
    with ReliableProducer(producer_config(stream_settings)) as producer:
        for i, value in enumerate(good):
            producer.produce(topic, value, f"good-{i}")
            if i % 7 == 0 and poisoned:  # scattered among valid rides, in the same batches
                name, (bad, _) = poisoned.pop()
                producer.produce(topic, bad, name)

    done = threading.Event()
    totals = Counter()

    def watch(outcome: PredictionOutcome) -> None:
        totals["predicted"] += outcome.predicted
        totals["dead"] += outcome.dead_letters
        if totals["predicted"] >= 50 and totals["dead"] >= len(poison):
            done.set()

    run_until(Predictor(stream_settings, "cost"), done, watch)
    assert (totals["predicted"], totals["dead"]) == (50, len(poison))

    letters = consume_all(stream_settings, stream_settings.topics.full("dlq"), expected=len(poison))
    assert len(letters) == len(poison)
    by_key = {m.key().decode(): m for m in letters}
    for name, (value, kind) in poison.items():
        letter = by_key[name]
        assert letter.value() == value  # the original bytes, untouched
        assert dlq.header(letter, dlq.KIND) == kind, name
        assert dlq.header(letter, dlq.SOURCE_TOPIC) == topic
        assert (
            dlq.header(letter, dlq.GROUP)
            == f"{stream_settings.topics.prefix}ridestream.predictor.cost"
        )
    assert "pickup_zone" in (dlq.header(by_key["zone-999"], dlq.MESSAGE) or "")
    predictions = consume_all(
        stream_settings, stream_settings.topics.full("predictions"), expected=50
    )
    assert sorted(m.key().decode() for m in predictions) == sorted(f"good-{i}" for i in range(50))


def test_moving_the_alias_mid_stream_switches_version_at_a_batch_boundary(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    import dataclasses

    from ridestream.ml.registry import promote
    from training.train import SPECS, train_models

    store = mlflow_settings(tmp_path)
    spec = dataclasses.replace(SPECS["duration"], max_rounds=20)
    versions = [
        train_models(store, ["duration"], month_file("2023-01"), month_file("2023-02"), sample=2000,
                     progress=False, specs={"duration": dataclasses.replace(spec, max_rounds=rounds)})[0].version
        for rounds in (20, 3)
    ]  # fmt: skip
    settings = kafka_settings.model_copy(update={"mlflow": store.mlflow, "models": store.models})
    rides = 3000
    done = threading.Event()
    promoted: list[int] = []

    def watch(outcome: PredictionOutcome, seen: list[int] = []) -> None:  # noqa: B006 - a running total
        seen.append(outcome.predicted)
        if sum(seen) >= rides // 3 and not promoted:
            promoted.append(sum(seen))
            promote(mlflow_client(store.mlflow), "ride-duration", versions[1])
        if sum(seen) >= rides:
            done.set()

    feeder = threading.Thread(
        target=replay,
        args=(settings, month_file("2023-02"), 600.0, rides),
        kwargs={"completions": False, "id_prefix": "m-", "progress": False},
    )
    feeder.start()
    outcomes = run_until(Predictor(settings, "duration"), done, watch)
    feeder.join(timeout=60)

    batch_versions = [o.versions[CHAMPION] for o in outcomes if o.predicted]
    switch = batch_versions.index(versions[1])
    assert set(batch_versions[:switch]) == {versions[0]}
    assert set(batch_versions[switch:]) == {versions[1]}  # never back, never mixed
    messages = consume_all(settings, settings.topics.full("predictions"), idle_timeout_s=5)
    serde = SingleObjectSerde(PREDICTION)
    champions = [p for p in (serde.decode(m.value()) for m in messages) if p["role"] == CHAMPION]
    assert len(champions) == rides
    assert len({p["ride_id"] for p in champions}) == rides  # none lost, none twice
    assert {p["model_version"] for p in champions} == set(versions)


def test_decode_keeps_input_order_when_both_decoders_have_rows() -> None:
    """Rows the columnar decoder leaves (here an upper-case uuid, which fastavro accepts) are
    decoded record by record and merged back in place; undecodable ones become dead letters."""
    from confluent_kafka import Message

    serde = SingleObjectSerde(RIDE_STARTED)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    predictor = Predictor(settings, "duration", champion=object())  # type: ignore[arg-type]
    upper = valid_record("slow", event_id="6F9619FF-8B86-D011-B42D-00C04FC964FF")
    payloads = [
        serde.encode(valid_record("fast-0")),
        serde.encode(upper),
        b"\x00garbage",
        serde.encode(valid_record("fast-1")),
    ]
    messages = [
        Message(topic="t", value=value, key=b"k", partition=0, offset=offset)
        for offset, value in enumerate(payloads)
    ]
    frame, dead = predictor.validate(predictor.decode(messages))
    assert frame["ride_id"].tolist() == ["fast-0", "slow", "fast-1"]
    assert [str(e) for e in frame["event_id"]][1] == "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    assert [letter.msg.offset() for letter in dead] == [2]
    assert build_features(frame).shape == (3, len(FEATURES))
