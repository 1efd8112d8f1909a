"""The opted-in rider's round trip while the backend streams, and what waiting riders cost.

The whole pipeline as users start it, on this run's own topics and a fresh SQLite store: three
predictors, the decision service and the gateway (``ridestream predict|decide|gateway``), with
the models compiled beforehand. The backend replays February at ``--rate`` rides/s with their
completions (``producers.replay``) while ``--riders`` riders each loop, for ``--seconds``:
``POST /v1/predictions`` with ``"enhanced": true``, then ``GET`` its SSE stream until the
``result`` event, then a pause (uniform in 0 to ``2 × --think-s``). Measured per round trip:

- the synchronous answer of the opted-in request (its own latency, the broker's ack included);
- request → ``result`` event: what the rider waits for the enhanced prediction.

Then the cost of waiting: the decision service is paused (SIGSTOP), ``--streams`` riders opt in
and open their streams, and for ``--pause-s`` the gateway's own count of store reads by waiting
streams (``ridestream_gateway_store_reads_total{why="wait"}``) is watched; then the service is
resumed and every stream must get its result.

    python -m bench.optin [--rate 1000] [--riders 200] [--seconds 20] [--streams 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import broker_for, drop_prefix, fresh_prefix, machine, percentile, write_results
from bench.decisions import service, service_env, start_predictors
from bench.harness import compile_champions, ensure_champions, ridestream_command
from bench.http_load import free_port, server
from gateway.schemas import EXAMPLE_RIDE
from ridestream.contracts.events import TARGETS
from ridestream.ml.registry import MODEL_NAMES
from ridestream.ml.tlc import month_file
from ridestream.settings import Settings

TARGET_ROUND_TRIP_P99_S = 0.3
TARGET_ANSWER_P99_S = 0.05
HOP_SAMPLE = 300  # round trips whose hops are read back from the store


def _histogram_quantiles(metrics: str, name: str, labels: str) -> dict[str, float]:
    """p50/p99 of one Prometheus histogram series (its bucket bounds, as histogram_quantile)."""
    buckets = []
    for line in metrics.splitlines():
        if line.startswith(f"{name}_bucket{{") and labels in line:
            bound = re.search(r'le="([^"]+)"', line)
            assert bound is not None
            buckets.append((float(bound.group(1)), float(line.split()[-1])))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return {}
    total = buckets[-1][1]
    return {
        f"p{q}": next(bound for bound, count in buckets if count >= total * q / 100)
        for q in (50, 99)
    }


def _store_reads(metrics: str, why: str) -> float:
    match = re.search(
        rf'^ridestream_gateway_store_reads_total\{{why="{why}"\}}\s+([\d.e+]+)$',
        metrics,
        re.MULTILINE,
    )
    return float(match.group(1)) if match else 0.0


async def _result(client: aiohttp.ClientSession, ride_id: str) -> str:
    """Follow a ride's SSE stream to its last event: ``result`` or ``timeout``."""
    name = ""
    async with client.get(f"/v1/rides/{ride_id}/events") as stream:
        async for raw in stream.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: ") and name in ("result", "timeout"):
                return name
    return name or "closed"


async def _opt_in(client: aiohttp.ClientSession, ride_id: str) -> float:
    started = time.perf_counter()
    ride = {**EXAMPLE_RIDE, "ride_id": ride_id, "enhanced": True}
    async with client.post("/v1/predictions", json=ride) as response:
        body = await response.json()
    answered = time.perf_counter() - started
    if response.status != 200 or body["enhanced"]["status"] != "pending":
        raise RuntimeError(f"opting in {ride_id} answered {response.status}: {body}")
    return answered


def _session(base: str, connections: int) -> aiohttp.ClientSession:
    # aiohttp, not httpx: with hundreds of open connections httpx's pool costs the load
    # generator more CPU than the server spends on them.
    return aiohttp.ClientSession(
        base_url=base,
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def _metrics(client: aiohttp.ClientSession) -> str:
    async with client.get("/metrics") as response:
        return await response.text()


async def riders(
    base: str, count: int, seconds: float, think_s: float, prefix: str = "optin"
) -> dict[str, Any]:
    """``count`` riders looping opt-in → result for ``seconds``; ride ids ``<prefix>-…``."""
    answers: list[float] = []
    trips: list[float] = []
    outcomes: dict[str, int] = {}
    stamps: list[tuple[str, float, float]] = []  # ride, asked and result (epoch s)
    deadline = time.monotonic() + seconds

    async def rider(number: int, client: aiohttp.ClientSession) -> None:
        await asyncio.sleep(random.uniform(0, 2 * think_s))  # riders arrive spread out
        trip = 0
        while time.monotonic() < deadline:
            ride_id = f"{prefix}-{number}-{trip}"
            trip += 1
            started, asked = time.perf_counter(), time.time()
            try:
                answers.append(await _opt_in(client, ride_id))
                outcome = await _result(client, ride_id)
            except aiohttp.ClientError as exc:  # counted, not fatal: the figures say how many
                outcome = type(exc).__name__
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome == "result":
                trips.append(time.perf_counter() - started)
                stamps.append((ride_id, asked, time.time()))
            await asyncio.sleep(random.uniform(0, 2 * think_s))

    async with _session(base, count * 2 + 10) as client:
        await asyncio.gather(*(rider(n, client) for n in range(count)))
        hops = await _hops(client, random.sample(stamps, min(len(stamps), HOP_SAMPLE)))
        metrics = await _metrics(client)
    return {
        "riders": count,
        "round_trips": len(trips),
        "outcomes": outcomes,
        "answer_s": _quantiles(answers),
        "round_trip_s": _quantiles(trips),
        "hops_s": hops,
        # The gateway's own view (bucket bounds): what it measured of the same requests.
        "gateway_metrics_s": {
            "opt_in_request": _histogram_quantiles(
                metrics, "ridestream_gateway_request_seconds", 'route="/v1/predictions"'
            ),
            "acknowledged_to_result_sse": _histogram_quantiles(
                metrics, "ridestream_gateway_enhanced_result_seconds", 'via="sse"'
            ),
            "stored_decision_to_gateway": _histogram_quantiles(
                metrics, "ridestream_gateway_decision_delivery_seconds", ""
            ),
        },
    }


async def _hops(
    client: aiohttp.ClientSession, stamps: list[tuple[str, float, float]]
) -> dict[str, dict[str, float]]:
    """Where a round trip's time went, from the store's own stamps of a sample of rides: the
    request → its last champion prediction made → its decision stored → the rider has it."""
    to_prediction, to_decision, to_rider = [], [], []
    for ride_id, asked, delivered in stamps:
        async with client.get(f"/v1/rides/{ride_id}") as response:
            ride = await response.json()
        made = [
            datetime.fromisoformat(p["predicted_at"]).timestamp()
            for p in ride["predictions"]
            if p["role"] == "champion" and p["target"] in TARGETS
        ]
        decided = datetime.fromisoformat(ride["decision"]["decided_at"]).timestamp()
        to_prediction.append(max(made) - asked)
        to_decision.append(decided - max(made))
        to_rider.append(delivered - decided)
    return {
        "request_to_last_prediction": _quantiles(to_prediction),
        "last_prediction_to_stored_decision": _quantiles(to_decision),
        "stored_decision_to_rider": _quantiles(to_rider),
    }


async def waiting_streams(
    base: str, count: int, pause_s: float, paused: Callable[[], AbstractContextManager[None]]
) -> dict[str, Any]:
    """``count`` streams open while nothing is decided: the store reads they cost meanwhile."""
    async with _session(base, count + 10) as client:
        opened = _store_reads(await _metrics(client), "wait")
        with paused():
            for start in range(0, count, 100):
                await asyncio.gather(
                    *(_opt_in(client, f"wait-{n}") for n in range(start, min(start + 100, count)))
                )
            streams = [asyncio.create_task(_result(client, f"wait-{n}")) for n in range(count)]
            # Every stream open and past its first read before the count starts.
            deadline = time.monotonic() + 60
            while _store_reads(await _metrics(client), "wait") < opened + count:
                if time.monotonic() > deadline:
                    raise RuntimeError("the waiting streams did not all open within 60 s")
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)
            before = _store_reads(await _metrics(client), "wait")
            await asyncio.sleep(pause_s)
            after = _store_reads(await _metrics(client), "wait")
        outcomes = await asyncio.gather(*streams)
        total = _store_reads(await _metrics(client), "wait")
    return {
        "streams": count,
        "paused_s": pause_s,
        "store_reads_while_waiting": after - before,
        "store_reads_per_stream": round((total - opened) / count, 2),
        "results": sum(o == "result" for o in outcomes),
        "other_outcomes": {o: outcomes.count(o) for o in set(outcomes) if o != "result"},
    }


def _quantiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"n": 0}
    return {
        "n": len(samples),
        "p50": round(percentile(samples, 50), 4),
        "p99": round(percentile(samples, 99), 4),
        "max": round(max(samples), 4),
    }


def run(settings: Settings, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    run_settings = fresh_prefix(settings, "optin")
    store_path = Path(tempfile.mkdtemp(prefix="ridestream-bench-")) / "decisions.db"
    env = service_env(settings, run_settings, args.backend, f"sqlite:///{store_path}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env["RIDESTREAM_GATEWAY__EVENTS_TIMEOUT_S"] = "60"
    try:
        with ExitStack() as stack:
            start_predictors(stack, env, logs, "optin")
            decide = stack.enter_context(
                service(["decide", "--instance-id", "bench"], env, logs / "optin-decide.log")
            )
            command = [ridestream_command(), "gateway", "--port", str(port)]
            stack.enter_context(server("optin-gateway", command, env, f"{base}/readyz", logs))
            # Everything serving before the clock starts: one ride comes back decided.
            asyncio.run(riders(base, 1, 0.1, 0.0, prefix="first"))

            # The backend in a process of its own: in this one it would share the riders' GIL.
            total = int(args.rate * (args.seconds + 5))
            replay_command = [
                "replay", "--input", str(month_file("2023-02")), "--rate", str(args.rate),
                "--limit", str(total), "--id-prefix", "backend-", "--no-progress",
            ]  # fmt: skip
            backend = stack.enter_context(service(replay_command, env, logs / "optin-replay.log"))
            time.sleep(3.0)  # the stream at its rate first
            trips = asyncio.run(riders(base, args.riders, args.seconds, args.think_s))
            backend.wait(timeout=120)

            @contextmanager
            def paused() -> Iterator[None]:
                os.kill(decide.pid, signal.SIGSTOP)
                try:
                    yield
                finally:
                    os.kill(decide.pid, signal.SIGCONT)

            waiting = (
                asyncio.run(waiting_streams(base, args.streams, args.pause_s, paused))
                if args.streams
                else None
            )
    finally:
        drop_prefix(run_settings)
        store_path.unlink(missing_ok=True)
    return {"rate": args.rate, "seconds": args.seconds, "think_s": args.think_s,
            "round_trips": trips, "waiting_streams": waiting}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="backend rides/s")
    parser.add_argument("--riders", type=int, default=200, help="concurrent opted-in riders")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the riders ride")
    parser.add_argument("--think-s", type=float, default=1.0, help="mean pause between trips")
    parser.add_argument("--streams", type=int, default=1000, help="waiting streams (0: skip)")
    parser.add_argument("--pause-s", type=float, default=5.0, help="how long they wait")
    parser.add_argument("--backend", default="lleaves", choices=["booster", "lleaves"])
    args = parser.parse_args()
    settings = Settings()
    names = [MODEL_NAMES[t] for t in (*TARGETS, "simple")]
    ensure_champions(settings, names)
    compile_champions(settings, names, args.backend)
    broker_for(settings)
    logs = Path(tempfile.mkdtemp(prefix="ridestream-bench-logs-"))
    result = run(settings, args, logs)
    trips = result["round_trips"]
    result["targets"] = {
        "round_trip_p99_s": TARGET_ROUND_TRIP_P99_S,
        "answer_p99_s": TARGET_ANSWER_P99_S,
        "round_trip_met": trips["round_trip_s"].get("p99", 1e9) <= TARGET_ROUND_TRIP_P99_S,
        "answer_met": trips["answer_s"].get("p99", 1e9) <= TARGET_ANSWER_P99_S,
        "no_reads_while_waiting": bool(result["waiting_streams"])
        and result["waiting_streams"]["store_reads_while_waiting"] == 0,
    }
    print(json.dumps(result, indent=2))
    path = write_results(
        "optin",
        {
            "benchmark": "optin",
            "command": "python -m bench.optin " + " ".join(sys.argv[1:]),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(),
            **result,
            "logs": str(logs),
        },
    )
    print(f"results in {path}")


if __name__ == "__main__":
    main()
