"""The decision service as its own process, killed with SIGKILL mid-stream and restarted: every
ride still gets exactly one decision, in the store and on the decisions topic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ridestream.contracts.events import TARGETS
from ridestream.contracts.schemas import PREDICTION, RIDE_COMPLETED
from ridestream.kafka.clients import producer_config
from ridestream.kafka.producer import ReliableProducer
from ridestream.ml.registry import MODEL_NAMES
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.settings import Settings
from ridestream.store.decisions import DecisionStore
from tests.helpers import consume_all

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

RIDES = 5000
KILLS = 3


def fill(settings: Settings) -> None:
    """Three champion predictions and a completion per ride, as the predictors and backend would."""
    predictions, completions = SingleObjectSerde(PREDICTION), SingleObjectSerde(RIDE_COMPLETED)
    producer = ReliableProducer(producer_config(settings))
    now, pickup = datetime.now(UTC), datetime(2023, 2, 1, 9, 0)
    values, keys, done = [], [], []
    for i in range(RIDES):
        ride = f"k-{i:06d}"
        for target in TARGETS:
            record = {
                "ride_id": ride,
                "target": target,
                "value": 5.0 + i % 40,
                "model_name": MODEL_NAMES[target],
                "model_version": "1",
                "role": "champion",
                "source_event_id": str(uuid.uuid4()),
                "source_event_time": now,
                "pickup_time": pickup,
                "predicted_at": now,
            }
            values.append(predictions.encode(record))
            keys.append(ride)
        done.append(
            completions.encode(
                {
                    "event_id": str(uuid.uuid4()),
                    "ride_id": ride,
                    "event_time": now,
                    "dropoff_time": pickup + timedelta(minutes=12),
                    "duration_minutes": 12.0,
                    "fare_amount": 20.0,
                    "tip_amount": 2.0,
                    "total_amount": 22.0,
                }
            )
        )
    producer.produce_many(settings.topics.full("predictions"), values, keys)
    producer.produce_many(
        settings.topics.full("completed"), done, [f"k-{i:06d}" for i in range(RIDES)]
    )
    producer.flush(60)


def test_kills_mid_stream_lose_and_double_no_decision(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = kafka_settings
    store_url = f"sqlite:///{tmp_path / 'decisions.db'}"
    env = {
        **os.environ,
        "RIDESTREAM_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "RIDESTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "RIDESTREAM_DECISIONS__STORE_URL": store_url,
        "RIDESTREAM_DECISIONS__BATCH_MAX_MESSAGES": "300",
        "RIDESTREAM_DECISIONS__DRIFT__ENABLED": "false",
        "RIDESTREAM_MLFLOW__HOME": str(tmp_path / "mlflow"),
    }
    command = [str(Path(sys.executable).with_name("ridestream")), "decide", "--instance-id", "r0"]
    fill(settings)
    store = DecisionStore(store_url)
    log = (tmp_path / "service.log").open("ab")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for kill in range(KILLS):
            target = (kill + 1) * RIDES // (KILLS + 2)
            deadline = time.monotonic() + 120
            while store.counts()["decisions"] < target:
                assert process.poll() is None, (tmp_path / "service.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the service made no progress"
                time.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while True:
            counts = store.counts()
            settled = counts["unpublished"] == 0 and counts["evaluated"] >= 3 * RIDES
            if counts["decisions"] >= RIDES and settled:
                break
            assert process.poll() is None, (tmp_path / "service.log").read_text()[-3000:]
            assert time.monotonic() < deadline, counts
            time.sleep(0.25)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        log.close()

    counts = store.counts()
    assert counts["decisions"] == RIDES
    assert counts["partial_decisions"] == 0
    assert counts["evaluated"] == 3 * RIDES
    published = consume_all(settings, settings.topics.full("decisions"), expected=RIDES)
    per_ride = Counter(m.key().decode() for m in published)
    assert len(per_ride) == RIDES
    assert max(per_ride.values()) == 1
    store.close()
