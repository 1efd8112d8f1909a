"""The drift monitor's window: RideStarted messages kept as they pass, read when PSI is computed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from confluent_kafka import Message

from decision_service.drift import DriftMonitor
from decision_service.metrics import DecisionMetrics
from producers.replay import STARTED_FIELDS
from ridestream.contracts.ids import random_uuids
from ridestream.contracts.schemas import RIDE_STARTED
from ridestream.ml.features import CATEGORICAL, FEATURES, build_features
from ridestream.ml.profiles import reference_profile
from ridestream.ml.tlc import load_month, month_file
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.serde.columnar_encode import ColumnarEncoder
from ridestream.settings import DecisionSettings, DriftSettings, Settings
from ridestream.store.decisions import DecisionStore


def started_messages(count: int, scale: float = 1.0) -> list[Message]:
    """February's first rides as RideStarted messages, distances times ``scale``."""
    rides = load_month(month_file("2023-02"))[0].iloc[:count]
    rides = rides.assign(trip_distance=rides["trip_distance"] * scale)
    serde = SingleObjectSerde(RIDE_STARTED)
    columns = {name: rides[name] for name in STARTED_FIELDS}
    columns.update(
        ride_id=[f"r{i}" for i in range(count)],
        event_id=random_uuids(count),
        event_time=np.full(count, 1_675_245_600_000),
        source=["backend"] * count,
        enhanced=[False] * count,
    )
    values = ColumnarEncoder(serde.schema, serde.header).encode(columns, count)
    return [
        Message(topic="rides.started", value=v, partition=0, offset=i) for i, v in enumerate(values)
    ]


def test_kept_rides_are_read_when_psi_is_computed_and_bad_ones_left_out(tmp_path: Path) -> None:
    messages = started_messages(1_500)
    calm = build_features(load_month(month_file("2023-02"))[0].iloc[:1_500])
    profile = reference_profile(calm, FEATURES, CATEGORICAL)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        decisions=DecisionSettings(
            home=tmp_path, drift=DriftSettings(window_rides=1_000, min_rides=500)
        ),
    )
    store = DecisionStore(settings.decisions.resolved_store_url)
    monitor = DriftMonitor(settings, store, DecisionMetrics(), profile=profile)

    garbage = Message(topic="rides.started", value=b"\x00not avro", partition=0, offset=9)
    monitor.keep([*messages[:700], garbage])
    monitor.keep(messages[700:])
    assert monitor.seen == 1_501
    assert len(monitor.window()) == 999  # the last 1,000 kept, the garbage one left out
    calm_psi = monitor.compute()["trip_distance"]

    monitor.keep(started_messages(1_000, scale=3.0))  # the whole window now drifted
    drifted = monitor.maybe_check(force=True)
    assert drifted["trip_distance"] > settings.decisions.drift.psi_threshold > calm_psi
    store.close()
