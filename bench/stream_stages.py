"""bench.stream's part 1 in memory: the predictor's own stages on the bytes it will read, no Kafka."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
from confluent_kafka import Message

from bench.common import started_columns
from bench.harness import (
    ensure_champions,
)
from consumers.predictor import Predictor
from ridestream.contracts.schemas import RIDE_STARTED
from ridestream.ml.features import build_features
from ridestream.ml.models import AliasedModel
from ridestream.ml.registry import CHAMPION, MODEL_NAMES
from ridestream.ml.tracking import mlflow_client
from ridestream.runtime import settle_for_streaming
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.serde.columnar_encode import ColumnarEncoder
from ridestream.settings import Settings

TARGET = "duration"
STAGES = ("decode", "validate", "features", "predict", "encode")


def champion(settings: Settings, backend: str) -> AliasedModel:
    """The duration champion through the given backend; trained first if the registry has none."""
    name = MODEL_NAMES[TARGET]
    ensure_champions(settings, [name])
    models = settings.models.model_copy(update={"backend": backend})
    model = AliasedModel(mlflow_client(settings.mlflow), name, CHAMPION, models)
    model.wait_compiled()  # measure the backend asked for, not the booster serving meanwhile
    return model


def encoded_rides(rides: pd.DataFrame, chunk: int = 10_000) -> tuple[list[bytes], list[str]]:
    """RideStarted payloads of the rides, as the publisher's batch path encodes them."""
    serde = SingleObjectSerde(RIDE_STARTED)
    encoder = ColumnarEncoder(serde.schema, serde.header)
    payloads: list[bytes] = []
    now_ms = int(time.time() * 1000)
    for start in range(0, len(rides), chunk):
        part = rides.iloc[start : start + chunk]
        payloads += encoder.encode(started_columns(part, now_ms), len(part))
    return payloads, rides["ride_id"].tolist()


# -- part 1: in memory ---------------------------------------------------------------------------
def in_memory(
    settings: Settings, handle: AliasedModel, payloads: list[bytes], keys: list[str]
) -> dict[str, Any]:
    """µs per ride of each predictor stage, on the payloads, in the predictor's batches."""
    predictor = Predictor(settings, TARGET, champion=handle, challenger=None)
    model = handle.current
    assert model is not None
    topic = settings.topics.full("started")
    messages = [
        Message(topic=topic, value=value, key=key.encode(), partition=0, offset=offset)
        for offset, (value, key) in enumerate(zip(payloads, keys, strict=True))
    ]
    batch = settings.predictor.batch_max_messages
    settle_for_streaming()  # as the predictor process does before its first batch
    # One batch untimed first: the feature tables and holidays load once per process.
    model.predict(build_features(predictor.validate(predictor.decode(messages[:batch]))[0]))
    spent = dict.fromkeys(STAGES, 0.0)
    for start in range(0, len(messages), batch):
        t0 = time.perf_counter()
        decoded = predictor.decode(messages[start : start + batch])
        t1 = time.perf_counter()
        frame, dead = predictor.validate(decoded)
        t2 = time.perf_counter()
        features = build_features(frame)
        t3 = time.perf_counter()
        values = model.predict(features)
        t4 = time.perf_counter()
        predictor.encode_predictions(model, frame, values)
        t5 = time.perf_counter()
        if dead:
            raise RuntimeError(f"{len(dead)} rides of the benchmark did not decode or validate")
        for stage, seconds in zip(
            STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True
        ):
            spent[stage] += seconds
    per_ride = {f"{stage}_us": spent[stage] * 1e6 / len(messages) for stage in STAGES}
    total = sum(per_ride.values())
    return {
        "backend": model.backend,
        **{k: round(v, 2) for k, v in per_ride.items()},
        "total_us": round(total, 2),
        "rides_per_s": round(1e6 / total, 1),
    }


def per_record_decode_us(payloads: list[bytes], batch: int) -> float:
    """µs per ride of what ``Predictor.decode`` did before the columnar decoder: fastavro per
    record (``SingleObjectSerde.decode``), then a frame from the dicts."""
    serde = SingleObjectSerde(RIDE_STARTED)
    begin = time.perf_counter()
    for start in range(0, len(payloads), batch):
        pd.DataFrame([serde.decode(p) for p in payloads[start : start + batch]])
    return round((time.perf_counter() - begin) * 1e6 / len(payloads), 2)
