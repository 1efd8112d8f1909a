"""What benchmarks of running services share: their processes, what they make visible to a
``read_committed`` reader and when, their CPU time and memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ridestream.contracts.schemas import PREDICTION
from ridestream.kafka.clients import consumer_config, is_transient, producer_config, unique_group_id
from ridestream.kafka.producer import ReliableProducer
from ridestream.ml.features import FEATURE_SET
from ridestream.ml.models import AliasedModel
from ridestream.ml.registry import CHAMPION, outdated_champions
from ridestream.ml.tracking import mlflow_client
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.serde.columnar_decode import ColumnarDecoder
from ridestream.settings import Settings


def ridestream_command() -> str:
    """The ``ridestream`` console script of the running interpreter's environment."""
    return str(Path(sys.executable).with_name("ridestream"))


def ensure_champions(settings: Settings, names: Iterable[str]) -> None:
    """Train, as ``make demo`` does, when any of the registered models has no ``@champion``."""
    client = mlflow_client(settings.mlflow)
    missing = outdated_champions(client, FEATURE_SET, list(names))
    if missing:
        print(
            f"no @champion of {', '.join(missing)}: training as `make demo` does (ridestream train) ..."
        )
        subprocess.run([ridestream_command(), "train"], check=True)


def compile_champions(settings: Settings, names: Iterable[str], backend: str) -> None:
    """Load each champion through ``backend`` and wait for its compiled form: the services the
    bench starts then find it in the shared cache and serve compiled from their first ride
    (instead of on the booster while they compile, which is what a fresh replica does)."""
    models = settings.models.model_copy(update={"backend": backend})
    client = mlflow_client(settings.mlflow)
    for name in names:
        AliasedModel(client, name, CHAMPION, models).wait_compiled()


@contextmanager
def stopped_at_exit(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """The process, sent SIGTERM on the way out (and killed if it will not stop in 60 s)."""
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc: mlflow serves from a child process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process tree so far."""
    ticks = 0
    for member in tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Follower:
    """A read_committed reader of a predictions topic: when each prediction became visible."""

    def __init__(self, settings: Settings, topic: str) -> None:
        # A short fetch wait, so "received" is close to "became visible" (committed).
        config = consumer_config(
            settings, unique_group_id("bench-follow"), **{"fetch.wait.max.ms": 10}
        )
        self.consumer = Consumer(config)
        self.consumer.subscribe([topic])
        serde = SingleObjectSerde(PREDICTION)
        self.decoder = ColumnarDecoder(serde.schema, serde.header)
        self.count = 0
        self.batches: list[tuple[float, float, np.ndarray, np.ndarray]] = []

    def poll(self, timeout_s: float) -> int:
        """Read what is visible now; returns how many predictions came."""
        messages = self.consumer.consume(10_000, timeout_s)
        if not messages:
            return 0
        wall, mono = time.time(), time.monotonic()
        errors = [error for msg in messages if (error := msg.error()) is not None]
        for error in errors:
            # A topic made a moment ago may not be in the client's metadata yet: it will be.
            if error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise RuntimeError(f"reading predictions failed: {error}")
        if errors:
            messages = [msg for msg in messages if not msg.error()]
            if not messages:
                return 0
        columns, ok = self.decoder.decode([msg.value() or b"" for msg in messages])
        if not ok.all():
            raise RuntimeError("a prediction did not decode")
        if any(
            role != "champion" for role in columns["role"]
        ):  # one prediction per ride, or the counts lie
            raise RuntimeError("a challenger's prediction: the benchmark measures the champion")
        self.batches.append(
            (wall, mono, _millis(columns["source_event_time"]), _millis(columns["predicted_at"]))
        )
        self.count += len(messages)
        return len(messages)

    def until(self, expected: int, deadline_s: float, alive: Callable[[], None]) -> None:
        """Read until ``expected`` predictions were seen; ``alive()`` raises if the producer died."""
        deadline = time.monotonic() + deadline_s
        while self.count < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {self.count} of {expected} predictions after {deadline_s} s"
                )
            self.poll(0.005)
            alive()

    def rates(self, expected: int) -> dict[str, float]:
        """rides/s between the first and the last visible batch, and by the predicted_at stamps."""
        first_mono = self.batches[0][1]
        last_mono = self.batches[-1][1]
        stamped = np.concatenate([b[3] for b in self.batches])
        span_ms = float(stamped.max() - stamped.min())
        return {
            "rides_per_s": round(
                (expected - len(self.batches[0][2])) / (last_mono - first_mono), 1
            ),
            "rides_per_s_by_predicted_at": round((expected - 1) / (span_ms / 1000), 1)
            if span_ms
            else float("nan"),
            "seconds": round(last_mono - first_mono, 3),
        }

    def close(self) -> None:
        self.consumer.close()


class CommittedProgress:
    """How many input records a transactional loop has made visible, from its consumer group's
    committed offsets: they commit in the same Kafka transaction as its output, so they move
    exactly when a ``read_committed`` reader would see the output. One offset request per poll,
    where a :class:`Follower` consumes and decodes every output record on the cores the loop under
    test runs on (at ~30,000 rides/s it took a share of them: the predictor measured 10–20% slower).
    """

    def __init__(self, settings: Settings, group: str, topic: str) -> None:
        # Never subscribes: it only asks the group's committed offsets, so it does not join it.
        self.consumer = Consumer(consumer_config(settings, group))
        partitions = self.consumer.list_topics(topic, timeout=30).topics[topic].partitions
        self.partitions = [TopicPartition(topic, p) for p in partitions]

    def count(self) -> int:
        """Input records committed so far (the offsets of a fresh topic count its records); 0
        while a new cluster's offsets topic is still finding its coordinators."""
        try:
            committed = self.consumer.committed(self.partitions, 30)
        except KafkaException as exc:
            if not is_transient(exc):
                raise
            return 0
        return sum(max(tp.offset, 0) for tp in committed)

    def until(
        self, expected: int, deadline_s: float, alive: Callable[[], None], every_s: float = 0.02
    ) -> tuple[float, int]:
        """Poll until ``expected`` are committed; the monotonic time and count of the first poll
        that saw at least that many."""
        deadline = time.monotonic() + deadline_s
        while True:
            count = self.count()
            if count >= expected:
                return time.monotonic(), count
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {count} of {expected} committed after {deadline_s} s")
            alive()
            time.sleep(every_s)

    def close(self) -> None:
        self.consumer.close()


def _millis(column: Any) -> np.ndarray:
    return pd.Series(column).dt.tz_localize(None).to_numpy(dtype="datetime64[ms]").view(np.int64)


def alive_check(process: subprocess.Popen[bytes], what: str, log: Path) -> Callable[[], None]:
    """A check that raises, with the end of its log, once the process has exited."""

    def check() -> None:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} exited with {process.returncode}; its log ends:\n{tail}")

    return check


def prefill(settings: Settings, payloads: list[bytes], keys: list[str]) -> None:
    """The payloads onto the run's started topic, acknowledged."""
    with ReliableProducer(producer_config(settings)) as producer:
        producer.produce_many(settings.topics.full("started"), payloads, keys)
