"""What every benchmark shares: a broker to run against, a fresh topic, results on disk."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ridestream.contracts.ids import random_uuids
from ridestream.kafka.clients import make_admin
from ridestream.kafka.local import LocalKafka
from ridestream.kafka.topics import create_project_topics, create_topics, delete_topics
from ridestream.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"


def broker_for(settings: Settings) -> LocalKafka | None:
    """Start (or reuse) the local broker unless an external cluster is configured."""
    if not settings.uses_local_kafka:
        return None
    broker = LocalKafka(settings.local_kafka)
    broker.start()
    return broker


def fresh_topic(settings: Settings, name: str, partitions: int = 6) -> str:
    """A new, empty topic for one measurement."""
    topic = f"{settings.topics.prefix}bench.{name}.{int(time.time() * 1000)}"
    create_topics(make_admin(settings), [topic], partitions, settings.topics.replication_factor)
    return topic


def drop_topic(settings: Settings, topic: str) -> None:
    """Delete a measurement topic so benchmarks leave no disk behind."""
    delete_topics(make_admin(settings), [topic])


def fresh_prefix(settings: Settings, name: str) -> Settings:
    """Settings whose every project topic is new and empty: a prefix of their own, topics made.

    For benchmarks that run whole services (a predictor reads and writes the project's topics by
    role); other data on the cluster is never touched.
    """
    prefix = f"{settings.topics.prefix}bench.{name}.{int(time.time() * 1000)}."
    run = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"prefix": prefix})}
    )
    create_project_topics(run, make_admin(run))
    return run


def drop_prefix(settings: Settings) -> None:
    """Delete every topic under a benchmark's prefix (see :func:`fresh_prefix`)."""
    prefix = settings.topics.prefix
    if ".bench." not in f".{prefix}":  # never a prefix this module did not make: that is real data
        raise ValueError(f"not a benchmark prefix: {prefix!r}")
    admin = make_admin(settings)
    names = [name for name in admin.list_topics(timeout=30).topics if name.startswith(prefix)]
    if names:
        delete_topics(admin, names)


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) of samples, by statistics.quantiles' inclusive method."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=1000, method="inclusive")[int(q * 10) - 1]


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rides/s, plus every run's rides/s."""
    ordered = sorted(runs, key=lambda r: r["rides_per_s"])
    return {**ordered[len(ordered) // 2], "all_rides_per_s": [r["rides_per_s"] for r in runs]}


def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "java": java.splitlines()[0] if java else None,
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def started_columns(part: pd.DataFrame, event_time_ms: int) -> dict[str, Any]:
    """The RideStarted columns of a frame of rides, as the publisher's batch path fills them."""
    n = len(part)
    columns: dict[str, Any] = {name: part[name] for name in part.columns}
    columns.update(
        event_id=random_uuids(n),
        event_time=np.full(n, event_time_ms),
        source=["backend"] * n,
        enhanced=[False] * n,
    )
    return columns
