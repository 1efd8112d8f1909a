"""Publisher throughput and delivery latency, side by side with Kafka's own producer benchmark.

Same broker, same run, same record size, same producer guarantees (acks=all, idempotence,
linger.ms=5, lz4). Ours publishes real February rides through ``RidePublisher`` from one Python
process, from a DataFrame to acknowledged messages: validate → encode (Avro single-object) →
produce → flush, with the batch API (``publish_started_batch``, chunks of ``--chunk`` rides). The
one-event-at-a-time API (``publish_started``: pydantic + fastavro per ride) is measured too, as the
baseline the batch path improves on. Kafka's is ``org.apache.kafka.tools.ProducerPerformance``
from the kafka-tools jar. Each side runs ``--runs`` times, alternating; the median run is
reported, with where our time goes per stage.

    python -m bench.publish [--rides 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import time
from typing import Any

import numpy as np
import pandas as pd

from bench.common import (
    broker_for,
    drop_topic,
    fresh_topic,
    machine,
    median_run,
    percentile,
    started_columns,
    write_results,
)
from producers.publisher import RidePublisher
from producers.replay import STARTED_FIELDS
from ridestream.contracts.events import RideStarted
from ridestream.contracts.schemas import RIDE_STARTED
from ridestream.contracts.validation import find_problems
from ridestream.kafka.distribution import java_executable
from ridestream.kafka.local import LocalKafka
from ridestream.ml.tlc import load_month, month_file
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.serde.columnar_encode import ColumnarEncoder
from ridestream.settings import Settings

PRODUCER_PROPS = {
    "acks": "all",
    "enable.idempotence": "true",
    "linger.ms": "5",
    "compression.type": "lz4",
}
_PERF_LINE = re.compile(
    r"(?P<records>\d+) records sent, (?P<rps>[\d.]+) records/sec \((?P<mbps>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th"
)


RIDE_COLUMNS = ["ride_id", *STARTED_FIELDS]


def ride_frame(count: int) -> pd.DataFrame:
    """``count`` real February rides (cycled), each with its own ride id, RideStarted columns."""
    rides, _ = load_month(month_file("2023-02"))
    cycled = rides.iloc[np.arange(count) % len(rides)].reset_index(drop=True)
    cycled["ride_id"] = [f"bench-{i:08d}" for i in range(count)]
    return cycled[RIDE_COLUMNS]


def mean_record_size(rides: pd.DataFrame) -> int:
    """The mean encoded RideStarted size of the first 10,000 rides: what Kafka's own tools send."""
    serde = SingleObjectSerde(RIDE_STARTED)
    sample = ride_mappings(rides.iloc[:10_000])
    return round(
        statistics.mean(len(serde.encode(RideStarted.parse(r).to_record())) for r in sample)
    )


def _column(rides: pd.DataFrame, name: str) -> list[Any]:
    series = rides[name]
    if pd.api.types.is_datetime64_any_dtype(series):
        return list(series.dt.to_pydatetime())
    if pd.api.types.is_integer_dtype(series.dtype):  # nullable Int32: <NA> becomes None
        return [None if pd.isna(v) else int(v) for v in series.tolist()]
    return series.tolist()


def event_fields(
    rides: pd.DataFrame, ids: list[str], fields: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Per ride, the given fields plus its ride_id, as plain Python values (None for missing)."""
    columns = [_column(rides, name) for name in fields]
    return [
        {"ride_id": ride_id, **dict(zip(fields, values, strict=True))}
        for ride_id, *values in zip(ids, *columns, strict=True)
    ]


def ride_mappings(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The same rides as plain mappings, for the one-event-at-a-time API."""
    return event_fields(frame, frame["ride_id"].tolist(), STARTED_FIELDS)


def run_ours(
    settings: Settings, rides: pd.DataFrame | list[dict[str, Any]], chunk: int
) -> dict[str, Any]:
    """Publish every ride through RidePublisher (batch API for a frame, else one by one)."""
    topic = fresh_topic(settings, "publish")
    latencies: list[float] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            latencies.append(msg.latency())

    run_settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"prefix": "", "started": topic})}
    )
    publisher = RidePublisher(run_settings, on_delivery=on_delivery)
    try:
        begin = time.perf_counter()
        if isinstance(rides, pd.DataFrame):
            for start in range(0, len(rides), chunk):
                publisher.publish_started_batch(rides.iloc[start : start + chunk])
        else:
            for ride in rides:
                publisher.publish_started(ride)
        publisher.flush()
        elapsed = time.perf_counter() - begin
    finally:
        drop_topic(settings, topic)
    if publisher.delivered != len(rides):
        raise RuntimeError(f"only {publisher.delivered} of {len(rides)} rides were acknowledged")
    return {
        "records": len(rides),
        "seconds": round(elapsed, 3),
        "rides_per_s": round(len(rides) / elapsed, 1),
        "latency_ms_p50": round(percentile(latencies, 50) * 1000, 2),
        "latency_ms_p99": round(percentile(latencies, 99) * 1000, 2),
    }


def run_kafka_perf(
    settings: Settings, broker: LocalKafka, records: int, record_size: int
) -> dict[str, Any]:
    """Kafka's ProducerPerformance at the same record size, against the same broker."""
    topic = fresh_topic(settings, "perf")
    props = [
        f"bootstrap.servers={settings.bootstrap_servers}",
        *(f"{k}={v}" for k, v in PRODUCER_PROPS.items()),
    ]
    command = [
        str(java_executable()), "-Xmx512m", "-cp", broker.classpath(),
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic", topic, "--num-records", str(records), "--record-size", str(record_size),
        "--throughput", "-1", "--producer-props", *props,
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    drop_topic(settings, topic)
    totals = list(_PERF_LINE.finditer(output))  # interim lines first; the last is the run's total
    if not totals:
        raise RuntimeError(f"unexpected ProducerPerformance output:\n{output[-2000:]}")
    match = totals[-1]
    return {
        "records": int(match["records"]),
        "rides_per_s": float(match["rps"]),
        "latency_ms_p50": float(match["p50"]),
        "latency_ms_p99": float(match["p99"]),
    }


def stage_costs(frame: pd.DataFrame, chunk: int) -> dict[str, dict[str, float]]:
    """µs per ride of each stage of both paths, measured alone in this process (no broker)."""
    sample = frame.iloc[:50_000]
    serde = SingleObjectSerde(RIDE_STARTED)
    encoder = ColumnarEncoder(serde.schema, serde.header)
    per = 1e6 / len(sample)

    begin = time.perf_counter()
    for start in range(0, len(sample), chunk):
        find_problems(RideStarted, sample.iloc[start : start + chunk])
    validate = time.perf_counter() - begin
    begin = time.perf_counter()
    for start in range(0, len(sample), chunk):
        part = sample.iloc[start : start + chunk]
        encoder.encode(started_columns(part, 0), len(part))
    encode = time.perf_counter() - begin
    batch = {"validate_us": round(validate * per, 2), "encode_us": round(encode * per, 2)}

    mappings = ride_mappings(sample)
    begin = time.perf_counter()
    events = [RideStarted.parse(ride) for ride in mappings]
    validate = time.perf_counter() - begin
    begin = time.perf_counter()
    records = [event.to_record() for event in events]
    dump = time.perf_counter() - begin
    begin = time.perf_counter()
    for record in records:
        serde.encode(record)
    encode = time.perf_counter() - begin
    single = {
        "validate_us": round(validate * per, 2),
        "to_record_us": round(dump * per, 2),
        "encode_us": round(encode * per, 2),
    }
    return {"batch_api": batch, "single_event_api": single}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rides", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument(
        "--single-rides", type=int, default=50_000, help="rides for the one-by-one API run"
    )
    args = parser.parse_args()

    settings = Settings()
    broker = broker_for(settings)
    if broker is None:
        raise SystemExit(
            "bench.publish compares against ProducerPerformance on the local broker; unset RIDESTREAM_KAFKA_BOOTSTRAP"
        )
    rides = ride_frame(args.rides)
    record_size = mean_record_size(rides)

    print("one-event-at-a-time API ...", flush=True)
    single = run_ours(settings, ride_mappings(rides.iloc[: args.single_rides]), args.chunk)
    print(f"  {single}", flush=True)
    ours, theirs = [], []
    for run in range(args.runs):
        print(f"run {run + 1}/{args.runs}: RidePublisher batch API ...", flush=True)
        ours.append(run_ours(settings, rides, args.chunk))
        print(f"  {ours[-1]}", flush=True)
        print(f"run {run + 1}/{args.runs}: ProducerPerformance ...", flush=True)
        theirs.append(run_kafka_perf(settings, broker, args.rides, record_size))
        print(f"  {theirs[-1]}", flush=True)

    ours_median, theirs_median = median_run(ours), median_run(theirs)
    ratio = ours_median["rides_per_s"] / theirs_median["rides_per_s"]
    results = {
        "benchmark": "publish",
        "command": f"python -m bench.publish --rides {args.rides} --runs {args.runs} --chunk {args.chunk}",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "kafka_version": settings.local_kafka.version,
        "record_size_bytes": record_size,
        "producer_props": PRODUCER_PROPS,
        "ridestream_publisher": ours_median,
        "ridestream_publisher_single_event_api": single,
        "kafka_producer_performance": theirs_median,
        "throughput_ratio": round(ratio, 3),
        "target_ratio": 0.5,
        "meets_target": ratio >= 0.5,
        "our_stage_costs_us_per_ride": stage_costs(rides, args.chunk),
    }
    path = write_results("publish", results)
    print(
        f"ours {ours_median['rides_per_s']:.0f} rides/s vs ProducerPerformance {theirs_median['rides_per_s']:.0f} "
        f"records/s: ratio {ratio:.2f} (target >= 0.5); results in {path}"
    )


if __name__ == "__main__":
    main()
