"""The decision service against a real broker, a real registry and a SQLite store: exactly one
decision per ride, out-of-order and redelivered input, dead letters, online evaluation, drift."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from consumers.predictor import Predictor
from decision_service.service import DecisionService
from producers.replay import replay
from ridestream.contracts.events import TARGETS
from ridestream.contracts.schemas import DECISION, PREDICTION, RIDE_COMPLETED
from ridestream.kafka import dlq
from ridestream.kafka.clients import producer_config
from ridestream.kafka.producer import ReliableProducer
from ridestream.ml.features import build_features
from ridestream.ml.models import load_version
from ridestream.ml.registry import CHAMPION, MODEL_NAMES
from ridestream.ml.tlc import load_month, month_file
from ridestream.ml.tracking import mlflow_client
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.settings import DecisionSettings, KestraSettings, Settings
from ridestream.store.decisions import DecisionStore
from ridestream.store.tables import metadata
from tests.conftest import free_port
from tests.helpers import Running, consume_all, replay_started, wait_for
from tests.kestra_contract import KestraContract
from training.data import TARGET_COLUMNS
from training.train import TrainResult

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PICKUP = datetime(2023, 2, 1, 9, 0)


@pytest.fixture
def service_settings(
    kafka_settings: Settings, trained: tuple[Settings, list[TrainResult]], tmp_path: Path
) -> Settings:
    """This test's topics, the session's registry, a private store and fast checks."""
    models = trained[0]
    decisions = DecisionSettings(home=tmp_path / "state", join_window_s=120.0)
    return kafka_settings.model_copy(
        update={"mlflow": models.mlflow, "models": models.models, "decisions": decisions}
    )


@pytest.mark.cluster
def test_replayed_rides_get_exactly_one_decision_and_evaluation_matches_offline(
    service_settings: Settings,
) -> None:
    rides = 10_000
    port = free_port()
    settings = service_settings.model_copy(
        update={"decisions": service_settings.decisions.model_copy(update={"metrics_port": port})}
    )
    replay(settings, month_file("2023-02"), rate=0, limit=rides, id_prefix="d-", progress=False)
    # Every ride is predicted and decided; the label convention's rides are evaluated.
    frame, _ = load_month(month_file("2023-02"))
    frame = frame.iloc[:rides]
    labelled = frame["labelled"].to_numpy()
    assert 0.9 * rides < labelled.sum() < rides
    service = DecisionService(settings)
    store = service.store
    running = [Running(Predictor(settings, target)) for target in TARGETS]
    running.append(Running(service))
    try:
        wait_for(
            lambda: (
                store.counts()["decisions"] >= rides
                and store.counts()["evaluated"] >= 3 * labelled.sum()
            ),
            240,
            "every ride decided and evaluated",
        )
    finally:
        for component in running:
            component.close()

    counts = store.counts()
    assert counts["decisions"] == rides
    assert counts["partial_decisions"] == 0
    assert counts["pending"] == 0
    assert counts["unpublished"] == 0
    # What /metrics (a real HTTP scrape on 127.0.0.1) says agrees with the store.
    service.evaluator.maybe_refresh(force=True)
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert f'ridestream_decisions_total{{completeness="full"}} {float(rides)}' in scraped
    assert 'ridestream_online_evaluated{model_version="' in scraped
    assert "ridestream_event_to_decision_seconds_count 10000.0" in scraped
    messages = consume_all(settings, settings.topics.full("decisions"), expected=rides)
    serde = SingleObjectSerde(DECISION)
    published = [serde.decode(m.value()) for m in messages]
    per_ride = Counter(d["ride_id"] for d in published)
    assert len(per_ride) == rides
    assert max(per_ride.values()) == 1
    # What was published is what was stored.
    sample = published[::997]
    for record in sample:
        stored = store.ride(record["ride_id"])
        assert stored is not None
        assert stored.decision is not None
        assert stored.decision.to_record() == record

    # Online evaluation equals an offline computation on the same rides: the champions' batch
    # predictions against the month's actual values, on the rides of the label convention.
    frame = frame[labelled]
    features = build_features(frame)
    client = mlflow_client(settings.mlflow)
    online = store.evaluation().set_index("target")
    for target in TARGETS:
        version = str(online.loc[target, "model_version"])
        predicted = load_version(
            client, MODEL_NAMES[target], version, CHAMPION, settings.models
        ).predict(features)
        actual = frame[TARGET_COLUMNS[target]].to_numpy()
        error = predicted - actual
        assert online.loc[target, "count"] == labelled.sum()
        assert online.loc[target, "mae"] == pytest.approx(np.abs(error).mean(), rel=1e-9)
        assert online.loc[target, "rmse"] == pytest.approx(np.sqrt((error**2).mean()), rel=1e-9)
    store.close()


# -- hand-made streams: out of order, redelivered, late, poison ----------------------------------
class Stream:
    """Produces hand-made Prediction and RideCompleted events onto a test's topics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = ReliableProducer(producer_config(settings))
        self.predictions = SingleObjectSerde(PREDICTION)
        self.completions = SingleObjectSerde(RIDE_COMPLETED)

    def prediction(
        self, ride: str, target: str, value: float, role: str = "champion", version: str = "1"
    ) -> None:
        record = {
            "ride_id": ride,
            "target": target,
            "value": value,
            "model_name": MODEL_NAMES[target],
            "model_version": version,
            "role": role,
            "source_event_id": str(uuid.uuid4()),
            "source_event_time": datetime.now(UTC),
            "pickup_time": PICKUP,
            "predicted_at": datetime.now(UTC),
        }
        self.raw("predictions", ride, self.predictions.encode(record))

    def completion(self, ride: str, duration: float, cost: float, tip: float) -> None:
        record = {
            "event_id": str(uuid.uuid4()),
            "ride_id": ride,
            "event_time": datetime.now(UTC),
            "dropoff_time": PICKUP + timedelta(minutes=max(duration, 0)),
            "duration_minutes": duration,
            "fare_amount": cost,
            "tip_amount": tip,
            "total_amount": cost + tip,
        }
        self.raw("completed", ride, self.completions.encode(record))

    def raw(self, role: str, key: str, value: bytes) -> None:
        self.producer.produce(self.settings.topics.full(role), value, key)
        self.producer.flush(30)


@pytest.fixture(params=["sqlite", "postgresql"])
def small_window(request: pytest.FixtureRequest, service_settings: Settings) -> Iterator[Settings]:
    """A short join window, no drift watching (these streams carry no rides), and the store on
    SQLite and on PostgreSQL."""
    postgres = request.param == "postgresql"
    decisions = service_settings.decisions.model_copy(
        update={
            "join_window_s": 1.5,
            "drift": service_settings.decisions.drift.model_copy(update={"enabled": False}),
            "store_url": request.getfixturevalue("postgres_url") if postgres else None,
        }
    )
    yield service_settings.model_copy(update={"decisions": decisions})
    if postgres:  # one server for the session: leave it empty for the next test
        store = DecisionStore(decisions.resolved_store_url)
        metadata.drop_all(store.engine)
        store.close()


def decided(store: DecisionStore, ride: str) -> bool:
    result = store.ride(ride)
    return result is not None and result.decision is not None


@pytest.mark.cluster
def test_late_duplicated_and_out_of_order_input_gives_one_decision_per_ride(
    small_window: Settings,
) -> None:
    settings = small_window
    stream = Stream(settings)
    service = DecisionService(settings)
    store = service.store
    running = Running(service)
    try:
        # Every prediction twice, and a challenger as well.
        for target, value in (("duration", 42.0), ("cost", 61.04), ("tip", 0.5)):
            stream.prediction("dup", target, value)
            stream.prediction("dup", target, value)
        stream.prediction("dup", "duration", 40.0, role="challenger", version="2")
        stream.completion("dup", 45.0, 60.0, 1.0)
        # Reversed order.
        for target, value in (("tip", 2.0), ("cost", 20.0), ("duration", 15.0)):
            stream.prediction("rev", target, value)
        # The completion before any prediction.
        stream.completion("early", 11.0, 15.0, 3.0)
        wait_for(lambda: store.counts()["actuals"] >= 2, 30, "the early completion stored")
        for target, value in (("duration", 10.0), ("cost", 16.0), ("tip", 2.5)):
            stream.prediction("early", target, value)
        # Two of three, then the third only after the window has expired.
        stream.prediction("late", "duration", 20.0)
        stream.prediction("late", "cost", 30.0)
        wait_for(lambda: decided(store, "late"), 30, "the partial decision")
        stream.prediction("late", "tip", 4.0)
        stream.completion("late", 22.0, 29.0, 4.5)
        # Poison: not Avro; a NaN prediction; a completion with a negative duration.
        stream.raw("predictions", "junk", b"\x00not avro at all")
        stream.prediction("nan", "cost", float("nan"))
        stream.completion("negative", -5.0, 10.0, 1.0)
        wait_for(
            lambda: (
                all(decided(store, r) for r in ("dup", "rev", "early"))
                and store.counts()["evaluated"] >= 3 + 1 + 3 + 3
            ),
            60,
            "decisions and evaluations",
        )
        # Read while the service runs: a batch it is still retrying (a transient error on a
        # cluster aborts and retries it) publishes its letters before the service stops.
        letters = consume_all(settings, settings.topics.full("dlq"), expected=3, idle_timeout_s=30)
        published = consume_all(
            settings, settings.topics.full("decisions"), expected=4, idle_timeout_s=30
        )
    finally:
        running.close()

    dup, rev, early, late = (store.ride(r) for r in ("dup", "rev", "early", "late"))
    assert dup is not None
    assert dup.decision is not None
    assert (dup.decision.quote, dup.decision.duration_minutes, dup.decision.expected_tip) == (
        61.05,
        42.0,
        0.5,
    )
    assert dup.decision.actions == ["driver_incentive"]
    assert not dup.decision.partial
    assert len(dup.predictions) == 4  # the redeliveries changed nothing
    assert rev is not None
    assert rev.decision is not None
    assert not rev.decision.partial
    assert early is not None
    assert early.decision is not None
    assert not early.decision.partial
    # The late tip is stored and evaluated, but the partial decision stands.
    assert late is not None
    assert late.decision is not None
    assert late.decision.partial
    assert late.decision.expected_tip is None
    assert late.decision.quote == 30.0
    assert {p.target for p in late.predictions} == {"duration", "cost", "tip"}

    errors = store.errors_frame()
    per_ride = errors.groupby("ride_id").size().to_dict()
    assert per_ride == {"dup": 4, "early": 3, "late": 3}
    challenger = errors[(errors.ride_id == "dup") & (errors.role == "challenger")]
    assert challenger[["predicted", "actual"]].to_numpy().tolist() == [[40.0, 45.0]]

    assert Counter(m.key().decode() for m in published) == {
        "dup": 1,
        "rev": 1,
        "early": 1,
        "late": 1,
    }
    reasons = sorted((m.key().decode(), dlq.header(m, dlq.KIND)) for m in letters)
    assert reasons == [
        ("junk", "bad_framing"),
        ("nan", "invalid_value"),
        ("negative", "invalid_value"),
    ]
    assert {dlq.header(m, dlq.SOURCE_TOPIC) for m in letters} == {
        settings.topics.full("predictions"),
        settings.topics.full("completed"),
    }
    store.close()


class CrashError(Exception):
    """Stands for the process dying at a chosen point."""


@pytest.mark.cluster
def test_a_crash_between_the_store_and_kafka_commits_publishes_each_decision_once(
    small_window: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = small_window
    stream = Stream(settings)

    def crash_after_kafka_commit(self: DecisionStore, *args: Any, **kwargs: Any) -> None:
        raise CrashError

    # 1. Dies after the Kafka commit, before the store learns the decisions were published.
    for target in TARGETS:
        stream.prediction("after", target, 10.0)
    service = DecisionService(settings)
    with monkeypatch.context() as patch:
        patch.setattr(DecisionStore, "settle", crash_after_kafka_commit)
        running = Running(service)
        running.thread.join(timeout=60)
    assert running.failure
    assert isinstance(running.failure[0], CrashError)
    assert service.store.in_flight(settings.decisions.instance_id) is not None

    # 2. Dies after the store commit, before the Kafka transaction.
    real_publish = DecisionService.publish

    def crash_before_kafka(self: DecisionService, producer: Any, batches: list[Any]) -> None:
        if any(batch.claimed for batch in batches):
            raise CrashError
        real_publish(self, producer, batches)

    for target in TARGETS:
        stream.prediction("before", target, 10.0)
    restarted = DecisionService(settings)
    with monkeypatch.context() as patch:
        patch.setattr(DecisionService, "publish", crash_before_kafka)
        running = Running(restarted)
        running.thread.join(timeout=60)
    assert running.failure
    assert isinstance(running.failure[0], CrashError)

    # The next start settles both: "after" is found on the topic, "before" is published now.
    final = DecisionService(settings)
    running = Running(final)
    try:
        wait_for(
            lambda: decided(final.store, "before") and final.store.counts()["unpublished"] == 0,
            60,
            "every decision published",
        )
    finally:
        running.close()
    published = consume_all(settings, settings.topics.full("decisions"), expected=2)
    assert Counter(m.key().decode() for m in published) == {"after": 1, "before": 1}
    assert final.store.in_flight(settings.decisions.instance_id) is None
    for service_ in (service, restarted, final):
        service_.close()


def test_a_drifted_stream_raises_psi_and_triggers_retraining_once(
    service_settings: Settings,
) -> None:
    rides = 3000
    with KestraContract() as kestra:
        kestra_settings = KestraSettings(
            url=kestra.url, username=kestra.username, password=kestra.password
        )
        from ridestream.kestra import KestraClient
        from tests.conftest import TRAINING_FLOW

        with KestraClient(kestra_settings) as client:
            client.deploy_flow(TRAINING_FLOW.read_text())
        drift = service_settings.decisions.drift.model_copy(
            update={"min_rides": 1000, "window_rides": 2000, "check_interval_s": 0.5}
        )
        settings = service_settings.model_copy(
            update={
                "kestra": kestra_settings,
                "decisions": service_settings.decisions.model_copy(update={"drift": drift}),
            }
        )
        service = DecisionService(settings)
        # Undrifted February rides first: below the threshold, nothing is triggered.
        replay_started(settings, rides, "calm-")
        running = Running(service)
        try:
            wait_for(lambda: service.drift.seen >= rides, 60, "the calm rides")
            calm = service.drift.maybe_check(force=True)
            assert calm
            assert max(calm.values()) < drift.psi_threshold, calm
            assert not [e for e in kestra.executions.values()]

            shifted = load_month(month_file("2023-02"))[0].iloc[:rides].copy()
            shifted["trip_distance"] = shifted["trip_distance"] * 3 + 2
            publish_rides(settings, shifted, "drift-")
            wait_for(lambda: service.drift.seen >= 2 * rides, 60, "the drifted rides")
            wait_for(lambda: len(kestra.executions) >= 1, 30, "the retraining call")
            time.sleep(1.5)  # more checks come and go inside the cooldown
        finally:
            running.close()
        psi = service.drift.last_psi
        assert psi["trip_distance"] > drift.psi_threshold
        executions = list(kestra.executions.values())
        assert len(executions) == 1
        assert executions[0]["flowId"] == "train-models"
        assert "trip_distance" in executions[0]["inputs"]["reason"]
        assert service.store.last_retrain_ms() is not None
        service.close()


def publish_rides(settings: Settings, rides: Any, prefix: str) -> None:
    """Publish a frame of rides as RideStarted events (the backend's batch API)."""
    from producers.publisher import RidePublisher
    from producers.replay import STARTED_FIELDS

    frame = rides[list(STARTED_FIELDS)].assign(
        ride_id=[f"{prefix}{i:07d}" for i in range(len(rides))]
    )
    with RidePublisher(settings) as publisher:
        publisher.publish_started_batch(frame)
