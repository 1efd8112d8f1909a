"""The decision service under a steady stream, with the whole pipeline running as in production.

Three predictor processes (duration, cost, tip) and one decision service process, each started as
users start them (``ridestream predict`` / ``ridestream decide``), on topics of their own and a
fresh SQLite decision store. Real February rides are replayed at a fixed rate with their
completions (``producers.replay``, a batch every 100 ms as ``bench.stream``'s steady part sends
them: RideStarted stamped with its event time when sent, RideCompleted as each ride ends on the
compressed clock). Measured, after a warm-up:

- decisions/s at steady state (decisions stored per second of the measured window), and whether
  the service kept up (every published ride decided, none on partial predictions);
- the latency from the ride's event time to its stored decision (``decided_at`` is set inside the
  store transaction that records it), p50 and p99 over the rides of the measured window;
- CPU seconds per process, to see who pays for what on the shared cores.

First, the service's own limit: **alone on a backlog** (``--capacity-rides`` rides, their
predictions made beforehand and the predictors stopped), decisions/s and CPU µs per ride with the
machine to itself.

    python -m bench.decisions [--rate 2000 500] [--seconds 20] [--capacity-rides 20000]

``bench.stream`` runs it as its decision-service part and keeps the figures in stream.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from bench.common import broker_for, drop_prefix, fresh_prefix, machine, percentile, write_results
from bench.harness import (
    Follower,
    alive_check,
    compile_champions,
    cpu_seconds,
    ensure_champions,
    ridestream_command,
    stopped_at_exit,
)
from producers.replay import replay
from ridestream.contracts.events import TARGETS
from ridestream.ml.registry import MODEL_NAMES
from ridestream.ml.tlc import month_file
from ridestream.settings import Settings
from ridestream.store.decisions import DecisionStore
from ridestream.store.tables import DECIDED, rides

WARMUP_S = 10.0
TICK_S = 0.1


@contextmanager
def service(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A ridestream process, stopped with SIGTERM (then SIGKILL) when the block ends."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [ridestream_command(), *command], env=env, stdout=out, stderr=out
        )
        with stopped_at_exit(process):
            yield process


def start_predictors(
    stack: ExitStack, env: dict[str, str], logs: Path, run: str
) -> dict[str, subprocess.Popen[bytes]]:
    """The three predictor processes, stopped when ``stack`` closes; logs ``<run>-predict-*``."""
    return {
        target: stack.enter_context(
            service(
                ["predict", "--target", target, "--instance-id", "bench"],
                env,
                logs / f"{run}-predict-{target}.log",
            )
        )
        for target in TARGETS
    }


def _decisions(store: DecisionStore) -> int:
    """Rides decided so far: one count through the join index, cheap enough to poll while
    measuring (``DecisionStore.counts`` counts whole tables, a load of its own on shared cores)."""
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).where(rides.c.status == DECIDED)) or 0)


def _decided(store: DecisionStore) -> list[tuple[str, int, int, bool]]:
    with store.engine.connect() as conn:
        return [
            (row.ride_id, row.source_event_time_ms, row.decided_at_ms, bool(row.partial))
            for row in conn.execute(
                select(
                    rides.c.ride_id,
                    rides.c.source_event_time_ms,
                    rides.c.decided_at_ms,
                    rides.c.partial,
                ).where(rides.c.status == DECIDED)
            )
        ]


def service_env(settings: Settings, run: Settings, backend: str, store_url: str) -> dict[str, str]:
    """The services' environment: the run's topics, the backend, a fresh store, champions only."""
    env = {
        **os.environ,
        "RIDESTREAM_TOPICS__PREFIX": run.topics.prefix,
        "RIDESTREAM_MODELS__BACKEND": backend,
        "RIDESTREAM_DECISIONS__STORE_URL": store_url,
        "RIDESTREAM_PREDICTOR__SHADOW": "false",  # the champions, as the issue measures them
        "RIDESTREAM_LOG_LEVEL": "WARNING",
        "OMP_WAIT_POLICY": "PASSIVE",  # LightGBM's OpenMP threads must not spin on shared cores
    }
    if settings.kafka_bootstrap:
        env["RIDESTREAM_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    return env


def capacity(settings: Settings, rides: int, backend: str, logs: Path) -> dict[str, Any]:
    """The decision service alone on a backlog: ``rides`` replayed with completions, their
    predictions made by the three predictors (then stopped), then ``ridestream decide`` started
    on it all. Its rate is rides over the span of their ``decided_at``; its CPU is what the
    process spent from its first decision to its last, per ride."""
    run = fresh_prefix(settings, "capacity")
    store_path = Path(tempfile.mkdtemp(prefix="ridestream-bench-")) / "decisions.db"
    store_url = f"sqlite:///{store_path}"
    env = service_env(settings, run, backend, store_url)
    store = DecisionStore(store_url)
    try:
        published = replay(
            run, month_file("2023-02"), rate=0, limit=rides, id_prefix="cap-", progress=False
        ).rides_started
        with ExitStack() as stack:
            predictors = start_predictors(stack, env, logs, "capacity")
            checks = [
                alive_check(p, f"predictor {t}", logs / f"capacity-predict-{t}.log")
                for t, p in predictors.items()
            ]

            def alive() -> None:
                for check in checks:
                    check()

            follower = Follower(run, run.topics.full("predictions"))
            try:
                follower.until(len(TARGETS) * published, 600, alive)
            finally:
                follower.close()
        with service(
            ["decide", "--instance-id", "bench"], env, logs / "capacity-decide.log"
        ) as process:
            processes = {"decide": process}
            _wait(lambda: _decisions(store) > 0, 120, processes, "the first decision")
            # CPU from here on, over the rides decided from here on (start-up excluded).
            cpu_before, decided_before = cpu_seconds(process.pid), _decisions(store)
            _wait(lambda: _decisions(store) >= published, 600, processes, "every decision")
            cpu = cpu_seconds(process.pid) - cpu_before
        decided = _decided(store)
    finally:
        store.close()
        drop_prefix(run)
        store_path.unlink(missing_ok=True)
    first, last = min(d[2] for d in decided), max(d[2] for d in decided)
    return {
        "rides": published,
        "rides_decided": len(decided),
        "decisions_per_s": round(len(decided) / max((last - first) / 1000, 1e-3), 1),
        "cpu_us_per_ride": round(cpu / max(len(decided) - decided_before, 1) * 1e6, 1),
        "backlog": f"{len(TARGETS) * published} predictions, {published} completions, "
        f"{published} started rides (drift)",
    }


def steady_decisions(
    settings: Settings,
    rate: float,
    seconds: float,
    backend: str,
    logs: Path,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    """Replay ``rate`` rides/s for ``seconds`` through three predictors and the decision service."""
    run = fresh_prefix(settings, "decisions")
    store_path = Path(tempfile.mkdtemp(prefix="ridestream-bench-")) / "decisions.db"
    store_url = f"sqlite:///{store_path}"
    env = service_env(settings, run, backend, store_url)
    total = int(rate * (seconds + WARMUP_S))
    store = DecisionStore(store_url)
    try:
        with ExitStack() as stack:
            processes = start_predictors(stack, env, logs, "decisions")
            processes["decide"] = stack.enter_context(
                service(["decide", "--instance-id", "bench"], env, logs / "decisions-decide.log")
            )
            # Every process up (models loaded, group joined) before the clock starts: a first
            # ride must come back decided.
            replay(run, month_file("2023-02"), rate=0, limit=50, id_prefix="warm-", progress=False)
            _wait(lambda: _decisions(store) >= 50, 120, processes, "the warm-up rides")
            cpu_before = {name: cpu_seconds(p.pid) for name, p in processes.items()}
            broker_before = cpu_seconds(broker_pid) if broker_pid else 0.0
            replay_before = time.process_time()
            started = time.time()
            summaries: list[Any] = []
            feeder = threading.Thread(
                target=lambda: summaries.append(
                    replay(
                        run,
                        month_file("2023-02"),
                        rate,
                        total,
                        id_prefix="steady-",
                        progress=False,
                        # bench.stream's schedule: a batch every 100 ms (the replay shares the
                        # two cores; each batch has a fixed cost whatever its size).
                        tick_s=TICK_S,
                    )
                )
            )
            feeder.start()
            feeder.join()
            total = summaries[0].rides_started  # the month may hold fewer rides than asked
            published_s = time.time() - started
            # Drain: every ride decided, or two minutes more — then the service did not keep up,
            # and what it decided so far is what is measured.
            try:
                _wait(
                    lambda: _decisions(store) >= 50 + total,
                    120,
                    processes,
                    "the last rides",
                )
                drained = True
            except TimeoutError:
                drained = False
            cpu = {
                name: round(cpu_seconds(p.pid) - cpu_before[name], 1)
                for name, p in processes.items()
            }
            # The rest of the machine's load: the replay (this process) and the local broker.
            cpu["replay"] = round(time.process_time() - replay_before, 1)
            if broker_pid:
                cpu["broker"] = round(cpu_seconds(broker_pid) - broker_before, 1)
        decided = [d for d in _decided(store) if d[0].startswith("steady-")]
    finally:
        store.close()
        drop_prefix(run)
        store_path.unlink(missing_ok=True)

    window_start = (started + WARMUP_S) * 1000
    window_end = (started + published_s) * 1000
    measured = [d for d in decided if window_start <= d[1] <= window_end]
    latencies = [(decided_at - event) / 1000 for _, event, decided_at, _ in measured]
    decided_in_window = sum(window_start <= d[2] <= window_end for d in decided)
    if not latencies:
        latencies = [float("nan")]
    return {
        "rate": rate,
        "seconds": seconds,
        "warmup_s": WARMUP_S,
        "backend": backend,
        "rides_published": total,
        "publish_seconds": round(published_s, 1),
        "rides_decided": len(decided),
        "kept_up": drained,
        "partial_decisions": sum(d[3] for d in decided),
        "decisions_per_s": round(decided_in_window / (window_end - window_start) * 1000, 1),
        "latency_event_to_stored_decision_s": {
            "rides": len(latencies),
            "p50": round(percentile(latencies, 50), 3),
            "p99": round(percentile(latencies, 99), 3),
            "max": round(float(np.max(latencies)), 3),
        },
        "cpu_seconds": cpu,
        "store": "sqlite (a fresh file)",
    }


def _wait(
    condition: Any, timeout_s: float, processes: dict[str, subprocess.Popen[bytes]], what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode} waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(1.0)


def main() -> None:
    """Command line: measure at each rate and write bench/results/decisions.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rate", type=float, nargs="+", default=[2000.0, 500.0], help="rides/s replayed"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="measured seconds (February holds 60,691 rides: 2,000 rides/s lasts 30 s)",
    )
    parser.add_argument("--backend", default="lleaves", choices=["booster", "lleaves"])
    parser.add_argument(
        "--capacity-rides", type=int, default=20_000, help="backlog of the alone run (0: skip)"
    )
    args = parser.parse_args()
    settings = Settings()
    # A fresh clone has no models yet; and the predictors should serve compiled from the start.
    names = [MODEL_NAMES[target] for target in TARGETS]
    ensure_champions(settings, names)
    compile_champions(settings, names, args.backend)
    # A broker the bench starts keeps running, like `ridestream kafka start`.
    broker = broker_for(settings)
    broker_pid = broker.pid() if broker is not None else None
    logs = Path(tempfile.mkdtemp(prefix="ridestream-bench-logs-"))
    alone = None
    if args.capacity_rides:
        alone = capacity(settings, args.capacity_rides, args.backend, logs)
        print(json.dumps({"alone_on_a_backlog": alone}, indent=2))
    runs = []
    for rate in args.rate:
        result = steady_decisions(settings, rate, args.seconds, args.backend, logs, broker_pid)
        result["target_p99_s"] = 0.5
        result["p99_met"] = (
            result["kept_up"] and result["latency_event_to_stored_decision_s"]["p99"] <= 0.5
        )
        runs.append(result)
        print(json.dumps(result, indent=2))
    path = write_results(
        "decisions",
        {
            "benchmark": "decisions",
            "command": "python -m bench.decisions " + " ".join(sys.argv[1:]),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(),
            "alone_on_a_backlog": alone,
            "runs": runs,
            "logs": str(logs),
        },
    )
    print(f"results in {path}")


if __name__ == "__main__":
    main()
