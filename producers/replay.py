"""Replay a TLC month as a live stream: RideStarted in pickup order at a chosen rate, and each
ride's RideCompleted once its duration has passed on the compressed clock.

It publishes what a backend would: every ride of the file, whatever its estimated distance (zero,
missing or absurd distances are ordinary rides), durations and amounts. Only events the contract
refuses are skipped, each counted and the first few logged with the reason: a RideStarted the
contract refuses skips its ride, a RideCompleted it refuses (a negative duration, say) only the
completion.

Time compression: rides start at a steady ``rate`` (ride *i* at ``i / rate`` seconds); the month's
clock is compressed by ``speedup = real span of the pickups / replay span``, and a ride completes
``duration / speedup`` after it started. The span is that of the pickups inside the file's month
(the files hold late reports from earlier days and a few pickups from 2009). ``rate=0``
publishes as fast as the broker takes it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from producers.publisher import RidePublisher
from ridestream.contracts.events import Event, RideCompleted, RideStarted
from ridestream.contracts.validation import find_problems
from ridestream.ml.features import RIDE_COLUMNS
from ridestream.ml.tlc import load_month, month_bounds
from ridestream.settings import Settings

logger = logging.getLogger(__name__)

START, COMPLETE = 0, 1


@dataclass
class ReplaySummary:
    """What a replay did, for the CLI's closing lines and for tests."""

    input: str
    rides_started: int
    rides_completed: int
    invalid_started: int
    invalid_completed: int
    elapsed_s: float
    target_rate: float
    achieved_rate: float
    speedup: float
    first_ride_id: str | None
    last_ride_id: str | None
    month: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def ride_ids(count: int, prefix: str) -> list[str]:
    """Deterministic ids: replaying a file twice names the same rides the same way."""
    return [f"{prefix}{i:07d}" for i in range(count)]


def schedule(
    rides: pd.DataFrame, rate: float, completions: bool = True, span_s: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Due times (s from start), kinds and ride indices of every event, in publishing order.
    ``span_s``: the real time the rides' pickups span (default: first to last pickup)."""
    n = len(rides)
    start_due = np.arange(n, dtype=np.float64) / rate if rate > 0 else np.zeros(n)
    span = (
        (
            (rides["pickup_time"].iloc[-1] - rides["pickup_time"].iloc[0]).total_seconds()
            if n
            else 0.0
        )
        if span_s is None
        else span_s
    )
    replayed = float(start_due[-1]) if n else 0.0
    if span > 0 and replayed > 0:
        speedup = span / replayed
        complete_due = start_due + rides["duration_minutes"].to_numpy() * 60.0 / speedup
    else:
        # No clock to compress (one ride, pickups all at once, or rate 0): each ride completes
        # right after it starts, rather than after its real duration.
        speedup = float("inf")
        complete_due = start_due.copy()
    if not completions:
        return start_due, np.full(n, START), np.arange(n), speedup
    due = np.concatenate([start_due, complete_due])
    kinds = np.concatenate([np.full(n, START), np.full(n, COMPLETE)])
    index = np.concatenate([np.arange(n), np.arange(n)])
    # Stable on (due, kind): a ride's start always precedes its completion.
    order = np.lexsort((kinds, due))
    return due[order], kinds[order], index[order], speedup


STARTED_FIELDS = RIDE_COLUMNS  # what a RideStarted carries about the ride, besides its ids
COMPLETED_FIELDS = ("dropoff_time", "duration_minutes", "fare_amount", "tip_amount", "total_amount")


def valid_rows(model: type[Event], frame: pd.DataFrame) -> np.ndarray:
    """Rows of a frame that obey the model; the others are logged with their reason."""
    problems = find_problems(model, frame)
    for problem in problems[:5]:
        logger.warning(
            "skipping %s ride_id=%s: %s %s",
            model.__name__,
            frame["ride_id"].iloc[problem.row],
            problem.field,
            problem.reason,
        )
    ok = np.ones(len(frame), dtype=bool)
    ok[[p.row for p in problems]] = False
    return ok


def replay(
    settings: Settings,
    input_path: Path,
    rate: float,
    limit: int | None = None,
    *,
    completions: bool = True,
    id_prefix: str | None = None,
    progress: bool = True,
    tick_s: float = 0.05,
) -> ReplaySummary:
    """Publish a TLC month as RideStarted/RideCompleted events; returns once all are acknowledged.

    Every ``tick_s`` the events that have come due are published as one batch (starts before
    completions), so a high rate costs batches, not per-event calls. A batch has fixed costs
    (validation and encoding, whatever its size), so a longer tick costs far less CPU at high
    rates. An event waits at most one tick; its event time is stamped when it is sent.
    """
    rides, report = load_month(input_path)
    if limit is not None:
        rides = rides.iloc[:limit]
    prefix = id_prefix if id_prefix is not None else f"{input_path.stem.rsplit('_', 1)[-1]}-"
    ids = ride_ids(len(rides), prefix)
    started = rides[list(STARTED_FIELDS)].assign(ride_id=ids)
    completed = rides[list(COMPLETED_FIELDS)].assign(ride_id=ids)
    # The only rides left out: events the contract refuses (said, counted, skipped).
    ok_started = valid_rows(RideStarted, started)
    ok_completed = valid_rows(RideCompleted, completed) & ok_started
    invalid_started, invalid_completed = (
        int((~ok_started).sum()),
        int((ok_started & ~ok_completed).sum()),
    )
    rides, started = rides[ok_started], started[ok_started]
    completed = completed[ok_started]
    complete = ok_completed[ok_started]
    ids = started["ride_id"].tolist()
    month_start, month_end = month_bounds(input_path, rides["pickup_time"])
    pickups = rides["pickup_time"]
    in_month = pickups[(pickups >= month_start) & (pickups < month_end)]
    span_s = (in_month.max() - in_month.min()).total_seconds() if len(in_month) > 1 else 0.0
    due, kinds, index, speedup = schedule(rides, rate, completions, span_s)
    if completions:  # a refused completion is not sent; its ride's start still is
        keep = (kinds == START) | complete[index]
        due, kinds, index = due[keep], kinds[keep], index[keep]
    counts = [0, 0]
    logger.info(
        "replaying rides=%d from %s at rate=%s rides/s (speedup x%.0f)",
        len(rides),
        input_path,
        rate,
        speedup,
    )
    with (
        RidePublisher(settings) as publisher,
        tqdm(total=len(due), unit="event", disable=not progress, desc="replay") as bar,
    ):
        begin = time.monotonic()
        position = 0
        next_batch_at = 0.0  # one batch per tick at most, whatever wakes the loop earlier
        while position < len(due):
            now = time.monotonic() - begin
            wait = max(due[position], next_batch_at) - now
            if wait > 0:
                # Waiting is serving delivery reports, a second at most between checks. They
                # wake poll() early, every few milliseconds under load: without next_batch_at
                # each wake-up sent the one or two events due by then.
                publisher.poll(min(wait, 1.0))
                continue
            next_batch_at = now + tick_s
            # Bounded groups keep memory and the progress bar steady when everything is due at once.
            end = min(int(np.searchsorted(due, now, side="right")), position + 10_000)
            group_kinds, group_rows = kinds[position:end], index[position:end]
            starting = group_rows[group_kinds == START]
            ending = group_rows[group_kinds == COMPLETE]
            if len(starting):
                counts[START] += publisher.publish_started_batch(started.iloc[starting])
            if len(ending):
                counts[COMPLETE] += publisher.publish_completed_batch(completed.iloc[ending])
            bar.update(end - position)
            position = end
        publisher.flush()
        elapsed = time.monotonic() - begin
    return ReplaySummary(
        input=str(input_path),
        rides_started=counts[START],
        rides_completed=counts[COMPLETE],
        invalid_started=invalid_started,
        invalid_completed=invalid_completed,
        elapsed_s=round(elapsed, 3),
        target_rate=rate,
        achieved_rate=round(counts[START] / elapsed, 1) if elapsed > 0 else float("inf"),
        speedup=round(speedup, 1),
        first_ride_id=ids[0] if ids else None,
        last_ride_id=ids[-1] if ids else None,
        month=asdict(report),
    )
