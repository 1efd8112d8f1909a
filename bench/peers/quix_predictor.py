"""The duration predictor written idiomatically with Quix Streams: the peer of ``consumers/predictor.py``.

What Quix Streams' documentation shows for a stream processor: an ``Application`` with
exactly-once processing, topics with (here custom) deserializer and serializer, a
``StreamingDataFrame`` that ``apply``s a function to each message — decode a RideStarted (Avro
single-object), compute its features, predict with the LightGBM booster on one row, build a
Prediction — and ``to_topic`` the result. Everything else is Quix Streams' defaults.

It runs in its own virtualenv (``bench/peers/requirements.txt``; Quix Streams pins versions of
confluent-kafka and pydantic the project cannot take), so it imports nothing of ridestream: the
champion arrives as a LightGBM model file, the feature lookups as JSON, both exported by
``bench/stream.py``, which starts this script and stops it with SIGTERM:

    bench/peers/.venv/bin/python bench/peers/quix_predictor.py --broker 127.0.0.1:9092 \\
        --input rides.started --output bench.quix.predictions --group bench-quix \\
        --model model.txt --tables tables.json --schemas schemas --model-version 2 \\
        --prediction-header c301... --state-dir /tmp/quix-state
"""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import lightgbm
import numpy as np
from quixstreams import Application
from quixstreams.models.serializers import Deserializer, SerializationContext, Serializer
from ride_features import ride_features, tables_from_payload

HEADER_SIZE = 10  # C3 01 + the 8-byte fingerprint of the writer schema


class SingleObjectAvroDeserializer(Deserializer):
    """Avro single-object encoding: check the marker, skip the fingerprint, read the body."""

    def __init__(self, schema: dict[str, Any]) -> None:
        super().__init__()
        self.schema = fastavro.parse_schema(schema)

    def __call__(self, value: bytes, ctx: SerializationContext) -> Any:
        if value[:2] != b"\xc3\x01":
            raise ValueError("not an Avro single-object payload")
        return fastavro.schemaless_reader(io.BytesIO(value[HEADER_SIZE:]), self.schema)


class SingleObjectAvroSerializer(Serializer):
    """A record as an Avro single-object payload: the header, then the body."""

    def __init__(self, schema: dict[str, Any], header: bytes) -> None:
        self.schema = fastavro.parse_schema(schema)
        self.header = header

    def __call__(self, value: Any, ctx: SerializationContext) -> bytes:
        buffer = io.BytesIO()
        buffer.write(self.header)
        fastavro.schemaless_writer(buffer, self.schema, value)
        return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in (
        "broker", "input", "output", "group", "model", "tables", "schemas", "model-version",
        "prediction-header", "state-dir",
    ):  # fmt: skip
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()

    schemas = Path(args.schemas)
    ride_schema = json.loads((schemas / "ride_started.v1.avsc").read_text())
    prediction_schema = json.loads((schemas / "prediction.v1.avsc").read_text())
    tables = tables_from_payload(json.loads(Path(args.tables).read_text()))
    booster = lightgbm.Booster(model_file=args.model)
    names = booster.feature_name()

    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    rides = app.topic(args.input, value_deserializer=SingleObjectAvroDeserializer(ride_schema))
    predictions = app.topic(
        args.output,
        value_serializer=SingleObjectAvroSerializer(
            prediction_schema, bytes.fromhex(args.prediction_header)
        ),
    )

    def predict(ride: dict[str, Any]) -> dict[str, Any]:
        features = ride_features(ride, tables)
        row = np.array([[features[name] for name in names]])
        value = float(booster.predict(row, num_threads=1)[0])
        return {
            "ride_id": ride["ride_id"],
            "target": "duration",
            "value": max(value, 0.0),
            "model_name": "ride-duration",
            "model_version": args.model_version,
            "role": "champion",
            "source_event_id": ride["event_id"],
            "source_event_time": ride["event_time"],
            "pickup_time": ride["pickup_time"],
            "predicted_at": datetime.now(UTC),
        }

    sdf = app.dataframe(rides)
    sdf = sdf.apply(predict)
    sdf.to_topic(predictions)
    app.run()


if __name__ == "__main__":
    main()
