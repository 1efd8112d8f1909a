"""Exactly once through crashes: predictor processes SIGKILLed and restarted, the broker too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from producers.replay import replay
from ridestream.contracts.schemas import PREDICTION
from ridestream.kafka.clients import make_admin
from ridestream.kafka.local import LocalKafka
from ridestream.kafka.topics import create_project_topics
from ridestream.ml.tlc import month_file
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.settings import Settings
from tests.conftest import local_kafka_settings, make_settings
from tests.helpers import consume_all, replay_started
from training.train import TrainResult

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

RIDES = 20_000
TARGETS = ("duration", "cost", "tip")


class Predictors:
    """`ridestream predict` processes, one per target, restarted when they die (a supervisor)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.kills = 0

    def start(self, target: str) -> None:
        command = [
            str(Path(sys.executable).with_name("ridestream")),
            "predict",
            "--target",
            target,
            "--instance-id",
            f"r-{target}",
        ]
        log = (self.logs / f"{target}.log").open("ab")
        self.processes[target] = subprocess.Popen(
            command, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def kill(self, target: str) -> None:
        self.processes[target].send_signal(signal.SIGKILL)
        self.processes[target].wait(timeout=30)
        self.kills += 1
        self.start(target)

    def supervise(self) -> None:
        for target, process in self.processes.items():
            if process.poll() is not None:
                self.start(target)

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def test_kills_and_a_broker_restart_lose_and_double_nothing(
    tmp_path: Path, trained: tuple[Settings, list[TrainResult]]
) -> None:
    broker = LocalKafka(local_kafka_settings(tmp_path / "broker"))
    broker.start()
    models = trained[0]
    predictors: Predictors | None = None
    try:
        settings = make_settings(broker.bootstrap, delivery_timeout_ms=120_000).model_copy(
            update={"mlflow": models.mlflow, "models": models.models}
        )
        create_project_topics(settings, make_admin(settings))
        env = {
            **os.environ,
            "RIDESTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
            "RIDESTREAM_TOPICS__PREFIX": settings.topics.prefix,
            "RIDESTREAM_MLFLOW__HOME": str(models.mlflow.home),
            "RIDESTREAM_MODELS__CACHE_DIR": str(models.models.cache_dir),
            "RIDESTREAM_PREDICTOR__BATCH_MAX_MESSAGES": "250",
        }
        predictors = Predictors(env, tmp_path)
        for target in TARGETS:
            predictors.start(target)

        feeder = threading.Thread(
            target=replay,
            args=(settings, month_file("2023-02"), 1500.0, RIDES),
            kwargs={"completions": False, "id_prefix": "k-", "progress": False},
        )
        feeder.start()
        # Five SIGKILLs of the duration predictor, and the broker killed and restarted once.
        for round_ in range(5):
            time.sleep(2.0)
            predictors.kill("duration")
            if round_ == 2:
                broker.kill()
                time.sleep(1.0)
                broker.restart_after_crash()
            predictors.supervise()
        feeder.join(timeout=180)
        assert not feeder.is_alive()
        assert predictors.kills == 5

        # Wait until every target has caught up, restarting anything that died meanwhile.
        serde = SingleObjectSerde(PREDICTION)
        deadline = time.monotonic() + 240
        while True:
            predictors.supervise()
            messages = consume_all(settings, settings.topics.full("predictions"), idle_timeout_s=3)
            decoded = [serde.decode(m.value()) for m in messages]
            per_target = Counter(p["target"] for p in decoded if p["role"] == "champion")
            if all(per_target[t] >= RIDES for t in TARGETS) or time.monotonic() > deadline:
                break
            time.sleep(2)
    finally:
        if predictors is not None:
            predictors.stop()
        broker.stop()

    champions = [p for p in decoded if p["role"] == "champion"]
    twice = [
        key for key, n in Counter((p["target"], p["ride_id"]) for p in champions).items() if n > 1
    ]
    assert twice == [], f"{len(twice)} predictions twice, e.g. {twice[:3]}"
    for target in TARGETS:
        assert {p["ride_id"] for p in champions if p["target"] == target} == {
            f"k-{i:07d}" for i in range(RIDES)
        }, target


def test_sigterm_finishes_the_batch_and_exits_cleanly(
    kafka_settings: Settings, trained: tuple[Settings, list[TrainResult]], tmp_path: Path
) -> None:
    models = trained[0]
    env = {
        **os.environ,
        "RIDESTREAM_KAFKA_BOOTSTRAP": kafka_settings.bootstrap_servers,
        "RIDESTREAM_TOPICS__PREFIX": kafka_settings.topics.prefix,
        "RIDESTREAM_MLFLOW__HOME": str(models.mlflow.home),
        "RIDESTREAM_MODELS__CACHE_DIR": str(models.models.cache_dir),
    }
    log = tmp_path / "tip.log"
    command = [str(Path(sys.executable).with_name("ridestream")), "predict", "--target", "tip"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    replay_started(kafka_settings, 500, "t-")
    deadline = time.monotonic() + 90
    while "started" not in log.read_text() and time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-2000:]
        time.sleep(0.2)
    predictions = consume_all(
        kafka_settings, kafka_settings.topics.full("predictions"), expected=500
    )
    assert len(predictions) == 500
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    text = log.read_text()
    assert "signal SIGTERM: finishing the batch in flight, then stopping" in text
    assert "predictor target=tip stopped" in text
