"""The three-node cluster against one node, and against Kafka's own tools on it, in one run.

Each layout is started fresh by the project's own ``LocalKafka`` (its own ports and folder, so a
broker the user runs is left alone), one after the other: one node (replication 1), then three
(replication 3, ``min.insync.replicas`` 2; ``acks=all`` always). On each:

- **publisher**: ``RidePublisher``'s batch path, rides/s and acknowledgement p50/p99, beside
  Kafka's ``ProducerPerformance`` at the same record size and producer guarantees;
- **predictor**: one duration predictor process on a pre-filled topic, rides/s (start-up
  excluded), and at a steady rate, event → visible prediction p50/p99;
- **the exactly-once copy limit**: Kafka's ``TransactionalMessageCopier`` (kafka-tools) copying the
  same pre-filled rides topic in transactions, records/s from its committed offsets, as the
  predictor's are counted. The predictor decodes, predicts and encodes besides; the target is
  ≥ 0.5 of the copier's rate.

    python -m bench.cluster [--rides 200000] [--predict-rides 100000] [--rate 2000]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from bench.common import RESULTS, drop_prefix, fresh_prefix, machine, write_results
from bench.harness import CommittedProgress, alive_check, prefill, stopped_at_exit
from bench.publish import mean_record_size, ride_frame, run_kafka_perf, run_ours
from bench.stream_kafka import end_to_end, steady
from bench.stream_stages import champion, encoded_rides
from ridestream.kafka.clients import make_admin
from ridestream.kafka.distribution import java_executable
from ridestream.kafka.local import LocalKafka
from ridestream.kafka.nodes import free_port_run
from ridestream.kafka.topics import create_topics
from ridestream.settings import LocalKafkaSettings, Settings

TARGET_PREDICTOR_OVER_COPIER = 0.5
LOG = RESULTS / "cluster.log"


@contextmanager
def layout(home: Path, brokers: int) -> Iterator[tuple[LocalKafka, Settings]]:
    """A fresh local cluster of ``brokers`` nodes, and settings pointing at it."""
    base = free_port_run(2 * brokers)
    local = LocalKafka(
        LocalKafkaSettings(
            brokers=brokers,
            port=base,
            controller_port=base + 1,
            home=home / f"{brokers}-node",
        )
    )
    local.start()
    try:
        yield local, Settings(kafka_bootstrap=local.bootstrap)
    finally:
        local.stop()


def run_copier(
    settings: Settings, local: LocalKafka, payloads: list[bytes], keys: list[str], log: IO[bytes]
) -> dict[str, Any]:
    """TransactionalMessageCopier over a pre-filled rides topic, counted by its commits."""
    run = fresh_prefix(settings, "copier")
    try:
        prefill(run, payloads, keys)
        source = run.topics.full("started")
        output = f"{run.topics.prefix}copied"
        create_topics(make_admin(run), [output], run.topics.partitions)
        group = f"{run.topics.prefix}copier"
        command = [
            str(java_executable()), "-Xmx512m", "-cp", local.classpath(),
            "org.apache.kafka.tools.TransactionalMessageCopier",
            "--broker-list", settings.bootstrap_servers, "--input-topic", source,
            "--input-partition", "0", "--output-topic", output, "--group-mode",
            "--use-group-metadata", "--consumer-group", group,
            "--transactional-id", f"{group}.0", "--max-messages", str(len(payloads)),
            "--transaction-size", str(settings.predictor.batch_max_messages),
        ]  # fmt: skip
        progress = CommittedProgress(run, group, source)
        try:
            process = subprocess.Popen(command, stdout=log, stderr=log)
            with stopped_at_exit(process):
                alive = alive_check(process, "the copier", LOG)
                began, first = progress.until(1, 120, alive)
                ended, _ = progress.until(len(payloads), 600, alive)
        finally:
            progress.close()
    finally:
        drop_prefix(run)
    return {
        "records": len(payloads),
        "records_per_s": round((len(payloads) - first) / (ended - began), 1),
        "transaction_size": settings.predictor.batch_max_messages,
    }


def measure(
    local: LocalKafka,
    settings: Settings,
    args: argparse.Namespace,
    rides: Any,
    encoded: tuple[list[bytes], list[str]],
    record_size: int,
    log: IO[bytes],
) -> dict[str, Any]:
    """Every figure of one layout."""
    brokers = local.count
    print(f"{brokers} node(s): publisher ...", flush=True)
    ours = run_ours(settings, rides, args.chunk)
    print(f"  {ours}\n{brokers} node(s): ProducerPerformance ...", flush=True)
    theirs = run_kafka_perf(settings, local, len(rides), record_size)
    print(f"  {theirs}\n{brokers} node(s): predictor on a backlog ...", flush=True)
    payloads, keys = encoded
    predictor, _ = end_to_end(settings, payloads, keys, args.backend, log)
    print(f"  {predictor}\n{brokers} node(s): predictor at {args.rate} rides/s ...", flush=True)
    paced = steady(settings, rides, args.backend, args.rate, args.seconds, args.seconds, log)
    print(f"  {paced['latency']}\n{brokers} node(s): TransactionalMessageCopier ...", flush=True)
    copier = run_copier(settings, local, payloads, keys, log)
    print(f"  {copier}", flush=True)
    ratio = round(predictor["rides_per_s"] / copier["records_per_s"], 3)
    return {
        "brokers": brokers,
        "replication_factor": 3 if brokers >= 3 else 1,
        "min_insync_replicas": 2 if brokers >= 3 else 1,
        "publisher": ours,
        "kafka_producer_performance": theirs,
        "publisher_over_producer_performance": round(
            ours["rides_per_s"] / theirs["rides_per_s"], 3
        ),
        "predictor": predictor,
        "predictor_steady": {"rate_rides_per_s": args.rate, **paced["latency"]},
        "transactional_copier": copier,
        "predictor_over_copier": ratio,
        "meets_target": ratio >= TARGET_PREDICTOR_OVER_COPIER,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rides", type=int, default=200_000, help="rides the publishers send")
    parser.add_argument("--predict-rides", type=int, default=100_000, help="pre-filled rides")
    parser.add_argument("--rate", type=int, default=2000, help="rides/s of the steady run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the steady run")
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--backend", choices=("booster", "lleaves"), default="booster")
    args = parser.parse_args()

    champion(Settings(), args.backend)  # trained as `make demo` does when the registry has none
    rides = ride_frame(args.rides)
    record_size = mean_record_size(rides)
    encoded = encoded_rides(rides.iloc[: args.predict_rides])
    layouts = []
    with (
        tempfile.TemporaryDirectory(prefix="ridestream-bench-cluster-") as home,
        LOG.open("wb") as log,
    ):
        for brokers in (1, 3):
            with layout(Path(home), brokers) as (local, settings):
                layouts.append(measure(local, settings, args, rides, encoded, record_size, log))
    one, three = layouts
    results = {
        "benchmark": "cluster",
        "command": (
            f"python -m bench.cluster --rides {args.rides} --predict-rides {args.predict_rides} "
            f"--rate {args.rate} --seconds {args.seconds} --backend {args.backend}"
        ),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "record_size_bytes": record_size,
        "layouts": {"one_node": one, "three_nodes": three},
        "three_over_one": {
            "publisher": round(
                three["publisher"]["rides_per_s"] / one["publisher"]["rides_per_s"], 3
            ),
            "predictor": round(
                three["predictor"]["rides_per_s"] / one["predictor"]["rides_per_s"], 3
            ),
        },
        "target_predictor_over_copier": TARGET_PREDICTOR_OVER_COPIER,
    }
    print(f"wrote {write_results('cluster', results)}")


if __name__ == "__main__":
    main()
