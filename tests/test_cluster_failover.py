"""Every service on the three-node cluster while the broker leading the rides is SIGKILLed.

20,000 rides replayed with `acks=all` through three predictors and the decision service on
`ridestream kafka start --brokers 3` (replication 3, min.insync.replicas 2); mid-stream the node
leading most of `rides.started` is killed, and started again later. Every ride the publisher saw
acknowledged is on the topic, and gets exactly one prediction per target and one decision. A
stream that stops short fails with the cluster's view of it (``tests/stream_state.py``).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.replay import replay
from ridestream.contracts.schemas import PREDICTION
from ridestream.kafka.clients import make_admin
from ridestream.kafka.local import LocalKafka
from ridestream.kafka.loop import group_name
from ridestream.kafka.topics import create_project_topics
from ridestream.ml.tlc import month_file
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.settings import Settings
from ridestream.store.decisions import DecisionStore
from tests import stream_state
from tests.conftest import local_cluster_settings, make_settings
from tests.helpers import consume_all, keys
from tests.processes import ServiceProcess

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

RIDES = 20_000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalKafka]:
    local = LocalKafka(local_cluster_settings(tmp_path / "cluster", brokers=3))
    local.start()
    try:
        yield local
    finally:
        local.stop()


def leader_of_most(settings: Settings, topic: str) -> int:
    """The node id leading the most partitions of ``topic``."""
    partitions = make_admin(settings).list_topics(topic, timeout=10).topics[topic].partitions
    return Counter(p.leader for p in partitions.values()).most_common(1)[0][0]


def test_a_leader_killed_mid_stream_loses_and_doubles_nothing_end_to_end(
    cluster: LocalKafka, trained: tuple[Settings, list[object]], tmp_path: Path
) -> None:
    models = trained[0]
    settings = make_settings(cluster.bootstrap, delivery_timeout_ms=120_000)
    create_project_topics(settings, make_admin(settings))
    store_url = f"sqlite:///{tmp_path / 'decisions.db'}"
    env = {
        **os.environ,
        "RIDESTREAM_KAFKA_BOOTSTRAP": cluster.bootstrap,
        "RIDESTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "RIDESTREAM_MLFLOW__HOME": str(models.mlflow.home),
        "RIDESTREAM_MODELS__CACHE_DIR": str(models.models.cache_dir),
        "RIDESTREAM_DECISIONS__STORE_URL": store_url,
        "RIDESTREAM_DECISIONS__DRIFT__ENABLED": "false",
        "RIDESTREAM_DELIVERY_TIMEOUT_MS": "120000",
    }
    names = ("duration", "cost", "tip")
    services = [ServiceProcess(t, env, tmp_path, "predict", "--target", t) for t in names]
    services.append(ServiceProcess("decide", env, tmp_path, "decide"))
    summary: list[object] = []
    try:
        for service in services:
            service.wait_started()
        feeder = threading.Thread(
            target=lambda: summary.append(
                replay(
                    settings, month_file("2023-02"), 1500.0, RIDES, id_prefix="f-", progress=False
                )
            )
        )
        feeder.start()
        time.sleep(4)
        victim = leader_of_most(settings, settings.topics.full("started"))
        cluster.kill(victim)
        time.sleep(8)
        cluster.restart_after_crash()
        feeder.join(timeout=300)
        assert not feeder.is_alive()
        assert summary, "the replay failed"

        store = DecisionStore(store_url)
        deadline = time.monotonic() + 300
        try:
            while store.counts()["decisions"] < RIDES and time.monotonic() < deadline:
                for service in services:
                    assert service.process.poll() is None, service.log[-3000:]
                time.sleep(1)
            counts = store.counts()
        finally:
            store.close()
        if counts["decisions"] < RIDES:
            reads = [(group_name(settings, "predictor", t), "started") for t in names]
            reads += [(group_name(settings, "decisions"), s) for s in ("predictions", "started")]
            pytest.fail(f"stalled at {counts}:\n{stream_state.describe(cluster, settings, reads)}")
    finally:
        for service in services:
            service.stop()

    for service in services:
        assert service.process.returncode == 0, service.log[-3000:]
    expected = {f"f-{i:07d}" for i in range(RIDES)}
    # Acknowledged means on the topic: acks=all with two in-sync replicas left.
    started = consume_all(settings, settings.topics.full("started"), idle_timeout_s=5)
    assert set(keys(started)) == expected
    serde = SingleObjectSerde(PREDICTION)
    predictions = consume_all(settings, settings.topics.full("predictions"), idle_timeout_s=5)
    champions = Counter(
        (p["target"], p["ride_id"])
        for p in (serde.decode(m.value() or b"") for m in predictions)
        if p["role"] == "champion"
    )
    assert max(champions.values()) == 1
    for target in names:
        assert {ride for t, ride in champions if t == target} == expected, target
    decisions = Counter(
        keys(consume_all(settings, settings.topics.full("decisions"), idle_timeout_s=5))
    )
    assert set(decisions) == expected
    assert max(decisions.values()) == 1
