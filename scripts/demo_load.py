"""The demo's gateway traffic: real February rides sent to ``POST /v1/predictions`` by a few
concurrent clients, a share of them opted in; the opted-in rides' completions are then published
as the ride backend would, so the gateway's model is evaluated online too. Writes a JSON summary.

    python scripts/demo_load.py --url http://127.0.0.1:8000 --prefix demo-0930- --output load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from producers.publisher import RidePublisher
from producers.replay import COMPLETED_FIELDS
from ridestream.ml.tlc import load_month, month_file
from ridestream.settings import get_settings

FIELDS = ("pickup_zone", "dropoff_zone", "trip_distance", "passenger_count", "vendor_id",
          "rate_code", "payment_type", "trip_type")  # fmt: skip


def request_body(ride: pd.Series, ride_id: str, client: str, enhanced: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ride_id": ride_id,
        "client_id": client,
        "enhanced": enhanced,
        "pickup_time": ride["pickup_time"].isoformat(),
    }
    for name in FIELDS:
        value = ride[name]
        if not pd.isna(value):
            body[name] = float(value) if name == "trip_distance" else int(value)
    return body


async def send_all(
    url: str, bodies: list[dict[str, Any]], concurrency: int
) -> list[dict[str, Any]]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    results: list[dict[str, Any]] = []

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            response = await http.post("/v1/predictions", json=body)
            answer = response.json() if response.status_code == 200 else {}
            results.append(
                {
                    "ride_id": body["ride_id"],
                    "status": response.status_code,
                    "seconds": time.perf_counter() - started,
                    "opted_in": body["enhanced"],
                    "enhanced": (answer.get("enhanced") or {}).get("status"),
                    "version": (answer.get("model") or {}).get("version"),
                }
            )

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--prefix", required=True, help="ride id prefix of this run")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--enhanced-share", type=float, default=0.2)
    parser.add_argument("--offset", type=int, default=30_000, help="first February ride used")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    rides, _ = load_month(month_file("2023-02"))
    rides = rides.iloc[args.offset : args.offset + args.requests].reset_index(drop=True)
    every = max(1, round(1 / args.enhanced_share)) if args.enhanced_share > 0 else 0
    ids = [f"{args.prefix}gw-{i:05d}" for i in range(len(rides))]
    bodies = [
        request_body(ride, ids[i], f"client-{i % 64}", bool(every) and i % every == 0)
        for i, ride in rides.iterrows()
    ]
    started = time.perf_counter()
    results = asyncio.run(send_all(args.url, bodies, args.concurrency))
    elapsed = time.perf_counter() - started

    # The backend reports how the opted-in rides ended: the ground truth for the online evaluation.
    pending = {r["ride_id"] for r in results if r["enhanced"] == "pending"}
    ended = rides.assign(ride_id=ids)
    ended = ended[ended["ride_id"].isin(pending)]
    if not ended.empty:
        with RidePublisher(get_settings()) as publisher:
            publisher.publish_completed_batch(ended[["ride_id", *COMPLETED_FIELDS]])

    latencies_ms = np.array([r["seconds"] for r in results]) * 1000
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    versions: dict[str, int] = {}
    for r in results:
        versions[str(r["version"])] = versions.get(str(r["version"]), 0) + 1
    summary = {
        "requests": len(results),
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(results) / elapsed, 1),
        "latency_ms": {
            "p50": round(float(np.percentile(latencies_ms, 50)), 2),
            "p99": round(float(np.percentile(latencies_ms, 99)), 2),
        },
        "statuses": statuses,
        "answers_by_simple_version": versions,
        "opted_in": sum(r["opted_in"] for r in results),
        "enhanced_pending": len(pending),
        "enhanced_unavailable": sum(r["enhanced"] == "unavailable" for r in results),
        "completions_published": len(ended),
    }
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
