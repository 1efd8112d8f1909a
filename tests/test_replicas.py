"""ServiceProcesss under load: predictor and decision-service replicas join and die mid-stream.

Three replicas of the duration predictor (the second and third started during a 20,000-ride
stream, the second then SIGKILLed) and two of the decision service (the second started, the
first SIGKILLed): no survivor crashes on a rebalance, every ride gets one prediction per target
and one decision, a killed replica's partitions are served again within 15 s, and each replica's
share of the partitions is in its /metrics.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy

from producers.replay import replay
from ridestream.contracts.schemas import PREDICTION
from ridestream.kafka.clients import make_admin
from ridestream.kafka.topics import create_project_topics, delete_topics
from ridestream.ml.tlc import month_file
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.settings import Settings
from ridestream.store.decisions import DecisionStore
from tests.conftest import make_settings
from tests.helpers import consume_all, keys
from tests.processes import ServiceProcess

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

RIDES = 20_000
PARTITIONS = 6
FAILOVER_S = 15.0


def served_again_after(replicas: list[ServiceProcess], metric: str, total: int) -> float:
    """Seconds until the replicas together hold ``total`` partitions again."""
    start = time.monotonic()
    while sum(r.assigned(metric) for r in replicas) < total:
        assert time.monotonic() - start < 60, [r.assigned(metric) for r in replicas]
        time.sleep(0.2)
    return time.monotonic() - start


@pytest.fixture
def store_url(postgres_url: str) -> Iterator[str]:
    """A database of its own on the session's PostgreSQL: replicas share one decision store."""
    name = f"replicas_{uuid.uuid4().hex[:8]}"
    server = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    server.dispose()


@pytest.fixture
def replica_settings(bootstrap: str) -> Iterator[Settings]:
    settings = make_settings(bootstrap, delivery_timeout_ms=120_000)
    create_project_topics(settings, make_admin(settings), PARTITIONS)
    yield settings
    delete_topics(make_admin(settings), list(settings.topics.names().values()))


def test_replicas_join_and_die_mid_stream_and_exactly_once_holds(
    replica_settings: Settings,
    store_url: str,
    trained: tuple[Settings, list[object]],
    tmp_path: Path,
) -> None:
    settings, models = replica_settings, trained[0]
    env = {
        **os.environ,
        "RIDESTREAM_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "RIDESTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "RIDESTREAM_MLFLOW__HOME": str(models.mlflow.home),
        "RIDESTREAM_MODELS__CACHE_DIR": str(models.models.cache_dir),
        "RIDESTREAM_DECISIONS__STORE_URL": store_url,
        "RIDESTREAM_DECISIONS__DRIFT__ENABLED": "false",
    }

    def start(name: str, *args: str) -> ServiceProcess:
        replica = ServiceProcess(name, env, tmp_path, *args)
        replicas.append(replica)
        return replica

    def predictor(name: str, target: str) -> ServiceProcess:
        return start(name, "predict", "--target", target)

    replicas: list[ServiceProcess] = []
    duration = "ridestream_assigned_partitions"
    decision = "ridestream_decision_assigned_partitions"
    try:
        first = [predictor("duration-a", "duration"), predictor("cost-a", "cost"),
                 predictor("tip-a", "tip"), start("decide-a", "decide")]  # fmt: skip
        for replica in first:
            replica.wait_started()
        feeder = threading.Thread(
            target=replay,
            args=(settings, month_file("2023-02"), 1500.0, RIDES),
            kwargs={"id_prefix": "r-", "progress": False},
        )
        feeder.start()
        time.sleep(2)
        duration_b = predictor("duration-b", "duration")
        decide_b = start("decide-b", "decide")
        time.sleep(2)
        duration_c = predictor("duration-c", "duration")
        for replica in (duration_b, decide_b, duration_c):
            replica.wait_started()
        # Every duration replica gets a share of the partitions, shown in its metrics.
        shares = wait_until(lambda: _shares(first[0], duration_b, duration_c, metric=duration))
        assert sum(shares) == PARTITIONS

        duration_b.kill()
        duration_failover = served_again_after([first[0], duration_c], duration, PARTITIONS)
        first[3].kill()
        # The decision service consumes predictions and completions: both topics' partitions.
        decision_failover = served_again_after([decide_b], decision, 2 * PARTITIONS)

        feeder.join(timeout=240)
        assert not feeder.is_alive()
        survivors = [r for r in replicas if r not in (duration_b, first[3])]
        champions, decisions = _wait_for_everything(settings, store_url, survivors)
    finally:
        for replica in replicas:
            replica.stop()

    for replica in survivors:
        assert replica.process.returncode == 0, replica.log[-3000:]
        assert "Traceback" not in replica.log, replica.log[-3000:]
    # Shown with `pytest -s`: the figures the session timeout buys.
    print(
        f"served again after {duration_failover:.1f} s (duration), {decision_failover:.1f} s (decisions)"
    )
    assert duration_failover <= FAILOVER_S, duration_failover
    assert decision_failover <= FAILOVER_S, decision_failover
    twice = [key for key, n in Counter(champions).items() if n > 1]
    assert twice == [], f"{len(twice)} predictions twice, e.g. {twice[:3]}"
    expected = {f"r-{i:07d}" for i in range(RIDES)}
    for target in ("duration", "cost", "tip"):
        assert {ride for t, ride in champions if t == target} == expected, target
    assert len(decisions) == RIDES
    assert set(decisions) == expected
    assert max(decisions.values()) == 1


def wait_until(read: Callable[[], list[int] | None], timeout_s: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (found := read()) is None:
        assert time.monotonic() < deadline, "never"
        time.sleep(0.2)
    return found


def _shares(*replicas: ServiceProcess, metric: str) -> list[int] | None:
    shares = [r.assigned(metric) for r in replicas]
    return shares if all(shares) and sum(shares) == PARTITIONS else None


def _wait_for_everything(
    settings: Settings, store_url: str, replicas: list[ServiceProcess]
) -> tuple[list[tuple[str, str]], Counter[str]]:
    """Champion predictions (target, ride) and decisions per ride, once every ride has them."""
    serde = SingleObjectSerde(PREDICTION)
    store = DecisionStore(store_url)
    deadline = time.monotonic() + 300
    try:
        while True:
            for replica in replicas:
                assert replica.process.poll() is None, replica.log[-3000:]
            if store.counts()["decisions"] >= RIDES or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        store.close()
    messages = consume_all(settings, settings.topics.full("predictions"), idle_timeout_s=5)
    decoded = [serde.decode(m.value() or b"") for m in messages]
    champions = [(p["target"], p["ride_id"]) for p in decoded if p["role"] == "champion"]
    published = consume_all(settings, settings.topics.full("decisions"), idle_timeout_s=5)
    return champions, Counter(keys(published))
