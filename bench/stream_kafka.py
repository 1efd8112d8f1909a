"""bench.stream's runs through Kafka: one predictor process end to end on a pre-filled topic, the
Quix Streams peer, and a steady rate for latency and memory."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from bench.common import (
    RESULTS,
    drop_prefix,
    fresh_prefix,
    percentile,
)
from bench.harness import (
    CommittedProgress,
    Follower,
    alive_check,
    cpu_seconds,
    prefill,
    ridestream_command,
    rss_kib,
    stopped_at_exit,
)
from bench.peers import quix
from bench.stream_stages import TARGET
from producers.publisher import RidePublisher
from ridestream.kafka.clients import make_admin
from ridestream.kafka.loop import group_name
from ridestream.kafka.topics import create_topics
from ridestream.ml.models import LoadedModel
from ridestream.settings import Settings

TICK_S = 0.1  # the steady publisher sends a batch every 100 ms
RSS_EVERY_S = 5.0
LOG = RESULTS / "stream-predictor.log"


@contextmanager
def predictor_process(settings: Settings, backend: str, log: IO[bytes]) -> Iterator[Any]:
    """The duration predictor (champion only) on the settings' topics, stopped with SIGTERM."""
    env = {
        **os.environ,
        "RIDESTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "RIDESTREAM_MODELS__BACKEND": backend,
        "RIDESTREAM_LOG_LEVEL": "WARNING",
        "OMP_WAIT_POLICY": "PASSIVE",  # LightGBM's OpenMP threads must not spin on 2 shared cores
    }
    if settings.kafka_bootstrap:
        env["RIDESTREAM_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    env["RIDESTREAM_PREDICTOR__INSTANCE_ID"] = "bench"
    # The champion alone: a challenger someone set in the registry must not double the work.
    env["RIDESTREAM_PREDICTOR__SHADOW"] = "false"
    command = [ridestream_command(), "predict", "--target", TARGET]
    with stopped_at_exit(subprocess.Popen(command, env=env, stdout=log, stderr=log)) as process:
        yield process


# -- part 1 end to end, part 2 ---------------------------------------------------------------------
def end_to_end(
    settings: Settings,
    payloads: list[bytes],
    keys: list[str],
    backend: str,
    log: IO[bytes],
    peer_model: LoadedModel | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One predictor process on a pre-filled topic (then, given a model, the Quix peer on it)."""
    run = fresh_prefix(settings, "stream")
    try:
        prefill(run, payloads, keys)
        rides = len(payloads)
        progress = CommittedProgress(
            run, group_name(run, "predictor", TARGET), run.topics.full("started")
        )
        try:
            with predictor_process(run, backend, log) as process:
                alive = alive_check(process, "the predictor", LOG)
                # From the first visible batch on: start-up (imports, model loading) excluded.
                began, first = progress.until(1, 300, alive)
                cpu = cpu_seconds(process.pid)
                ended, _ = progress.until(rides, 600, alive)
                cpu = cpu_seconds(process.pid) - cpu
        finally:
            progress.close()
        # What it made visible, read once it is done: every ride once, and its own predicted_at
        # stamps as a second clock that no observer can slow.
        follower = Follower(run, run.topics.full("predictions"))
        try:
            follower.until(rides, 120, lambda: None)
            stamped = follower.rates(rides)["rides_per_s_by_predicted_at"]
        finally:
            follower.close()
        if follower.count != rides:
            raise RuntimeError(f"{follower.count} predictions for {rides} rides")
        ours = {
            "backend": backend,
            "rides": rides,
            "rides_per_s": round((rides - first) / (ended - began), 1),
            "rides_per_s_by_predicted_at": stamped,
            "seconds": round(ended - began, 3),
            "predictor_cpu_us_per_ride": round(cpu * 1e6 / (rides - first), 2),
        }
        theirs = None
        if peer_model is not None:
            theirs = run_peer(run, peer_model, rides, log)
        return ours, theirs
    finally:
        drop_prefix(run)


def run_peer(run: Settings, model: LoadedModel, rides: int, log: IO[bytes]) -> dict[str, Any]:
    """The Quix Streams peer on the run's started topic, to a predictions topic of its own."""
    output = f"{run.topics.prefix}quix.predictions"
    create_topics(make_admin(run), [output], run.topics.partitions)
    follower = Follower(run, output)
    with (
        tempfile.TemporaryDirectory(prefix="quix-peer-") as workdir,
        stopped_at_exit(
            quix.start_peer(
                run,
                model,
                run.topics.full("started"),
                output,
                f"{run.topics.prefix}quix",
                Path(workdir),
                log,
            )
        ) as process,
    ):
        alive = alive_check(process, "the Quix Streams peer", LOG)
        follower.until(1, 300, alive)
        first, cpu = follower.count, cpu_seconds(process.pid)
        follower.until(rides, 1800, alive)
        cpu = cpu_seconds(process.pid) - cpu
    follower.close()
    result = {"rides": rides, **follower.rates(rides)}
    result["cpu_us_per_ride"] = round(cpu * 1e6 / (rides - first), 2)
    return result


# -- parts 3 and 4: a steady rate ------------------------------------------------------------------
def steady(
    settings: Settings,
    rides: pd.DataFrame,
    backend: str,
    rate: int,
    seconds: float,
    latency_seconds: float,
    log: IO[bytes],
) -> dict[str, Any]:
    """The predictor at ``rate`` rides/s for ``seconds``: latency over the first
    ``latency_seconds``, its RSS every 5 s throughout."""
    run = fresh_prefix(settings, "steady")
    per_tick = round(rate * TICK_S)
    sent = 0

    def next_rides() -> pd.DataFrame:
        nonlocal sent
        index = np.arange(sent, sent + per_tick) % len(rides)
        part = rides.iloc[index].assign(
            ride_id=[f"steady-{i:09d}" for i in range(sent, sent + per_tick)]
        )
        sent += per_tick
        return part

    try:
        follower = Follower(run, run.topics.full("predictions"))
        with predictor_process(run, backend, log) as process, RidePublisher(run) as publisher:
            alive = alive_check(process, "the predictor", LOG)
            publisher.publish_started_batch(
                next_rides()
            )  # warm-up: the clock starts once it is predicted
            publisher.flush()
            follower.until(per_tick, 300, alive)
            rss: list[tuple[float, int]] = []
            stop = threading.Event()

            def sample() -> None:
                begin = time.monotonic()
                while not stop.is_set():
                    rss.append((time.monotonic() - begin, rss_kib(process.pid)))
                    stop.wait(RSS_EVERY_S)

            sampler = threading.Thread(target=sample, name="rss", daemon=True)
            sampler.start()
            start_mono, start_wall_ms = time.monotonic(), time.time() * 1000
            late = 0.0
            tick = 0
            while (now := time.monotonic()) < start_mono + seconds:
                due = start_mono + tick * TICK_S
                if now < due:
                    follower.poll(min(due - now, 0.005))
                    continue
                late = max(late, now - due)
                publisher.publish_started_batch(next_rides())  # event_time stamped now
                tick += 1
                if tick % 50 == 0:
                    alive()
            publisher.flush()
            follower.until(sent, 120, alive)
            stop.set()
            sampler.join()
        follower.close()
    finally:
        drop_prefix(run)

    latencies: list[float] = []
    to_predicted: list[float] = []  # event time → predicted_at: waiting, decoding, the model
    for wall, _, source_ms, predicted_ms in follower.batches:
        window = (source_ms >= start_wall_ms) & (source_ms < start_wall_ms + latency_seconds * 1000)
        latencies += (wall * 1000 - source_ms[window]).tolist()
        to_predicted += (predicted_ms[window] - source_ms[window]).tolist()
    return {
        "rate_rides_per_s": rate,
        "seconds": seconds,
        "rides_published": sent,
        "publisher_max_late_ms": round(late * 1000, 1),
        "latency": {
            "window_s": latency_seconds,
            "samples": len(latencies),
            "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
            "max_ms": round(max(latencies), 1),
            "event_to_predicted_at_p50_ms": round(percentile(to_predicted, 50), 1),
            "event_to_predicted_at_p99_ms": round(percentile(to_predicted, 99), 1),
        },
        "batch_max_wait_s": settings.predictor.batch_max_wait_s,
        "rss": rss_summary(rss, seconds),
    }


def rss_summary(samples: list[tuple[float, int]], seconds: float) -> dict[str, Any]:
    """First minute after warm-up against the last minute (shorter windows for short runs)."""
    warmup = 60.0 if seconds >= 300 else seconds / 6
    window = min(60.0, seconds / 3)
    first = [kib for t, kib in samples if warmup <= t < warmup + window]
    last = [kib for t, kib in samples if t >= seconds - window]
    after = [kib for t, kib in samples if t >= warmup]
    first_mib, last_mib = statistics.median(first) / 1024, statistics.median(last) / 1024
    return {
        "every_s": RSS_EVERY_S,
        "warmup_s": warmup,
        "window_s": window,
        "first_window_median_mib": round(first_mib, 1),
        "last_window_median_mib": round(last_mib, 1),
        "drift": round(last_mib / first_mib - 1, 4),
        "max_over_min_after_warmup": round(max(after) / min(after), 4),
        "samples_mib": [(round(t, 1), round(kib / 1024, 1)) for t, kib in samples],
    }
