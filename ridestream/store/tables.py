"""The decision store's tables (SQLAlchemy Core), and what every part of the store shares."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
)

from ridestream.exceptions import RidestreamError
from ridestream.ml.scoring import MAX_MINUTES, MIN_MINUTES

PENDING, DECIDED = "pending", "decided"
# SQLite allows 32,766 bound parameters per statement; stay far below for IN lists.
CHUNK = 900

metadata = MetaData()


def _model_version() -> list[Column[Any]]:
    """The columns that say which model version a row is about (part of its key), and its role."""
    return [
        Column("target", String(16), primary_key=True),
        Column("model_name", String(128), primary_key=True),
        Column("model_version", String(32), primary_key=True),
        Column("role", String(16), nullable=False),
    ]


predictions = Table(
    "predictions",
    metadata,
    Column("ride_id", String(128), primary_key=True),
    *_model_version(),
    Column("value", Float, nullable=False),
    Column("source_event_time_ms", BigInteger, nullable=False),
    Column("pickup_time_ms", BigInteger, nullable=False),
    Column("predicted_at_ms", BigInteger, nullable=False),
    Column("stored_at_ms", BigInteger, nullable=False),
)

rides = Table(
    "rides",
    metadata,
    Column("ride_id", String(128), primary_key=True),
    Column("partition", Integer, nullable=False),
    Column("first_seen_ms", BigInteger, nullable=False),  # the first champion prediction's arrival
    Column("status", String(16), nullable=False),
    Column("quote", Float),
    Column("duration_minutes", Float),
    Column("eta_ms", BigInteger),
    Column("expected_tip", Float),
    Column("actions", Text),  # JSON list
    Column("models", Text),  # JSON list of {target, model_name, model_version}
    Column("partial", Boolean),
    Column("decided_at_ms", BigInteger),
    Column("source_event_time_ms", BigInteger),  # the RideStarted event time, for latency
    Column("publish_token", String(64), index=True),
    Column("published", Boolean, nullable=False, default=False),
    # What every batch asks: the pending joins that expired, the decisions not yet published. Both
    # stay small while the table grows by a row per ride, so each query reads only its few rows.
    Index("ix_rides_joins", "status", "first_seen_ms"),
    Index("ix_rides_unpublished", "published", "status", "partition"),
)

actuals = Table(
    "actuals",
    metadata,
    Column("ride_id", String(128), primary_key=True),
    Column("duration", Float, nullable=False),
    Column("cost", Float, nullable=False),
    Column("tip", Float, nullable=False),
    Column("dropoff_time_ms", BigInteger, nullable=False),
    Column("event_time_ms", BigInteger, nullable=False),
    Column("stored_at_ms", BigInteger, nullable=False),
)

# The label convention (ridestream.ml.scoring) as a condition on a completion: what is scored.
LABELLED = and_(actuals.c.duration.between(MIN_MINUTES, MAX_MINUTES), actuals.c.cost > 0)

errors = Table(
    "errors",
    metadata,
    Column("ride_id", String(128), primary_key=True),
    *_model_version(),
    Column("predicted", Float, nullable=False),
    Column("actual", Float, nullable=False),
    Column("evaluated_at_ms", BigInteger, nullable=False),
    # The sliding window reads each version's newest rows through this, never the whole table.
    Index("ix_errors_version_time", "target", "model_name", "model_version", "evaluated_at_ms"),
)

# Running sums per model version, kept in the transaction that records the errors: the totals are
# read in constant time however long the service has run.
model_totals = Table(
    "model_totals",
    metadata,
    *_model_version(),
    Column("evaluated", BigInteger, nullable=False),
    Column("sum_abs", Float, nullable=False),
    Column("sum_squared", Float, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("instance", String(200), primary_key=True),
    Column("token", String(64), nullable=False),
    Column("start_offsets", Text, nullable=False),  # JSON {partition: offset} of rides.decisions
)

# The layout of the tables above; a store written by another layout is refused with a clear
# error rather than half-read (there are no migrations yet: a new layout means a new store).
SCHEMA_VERSION = 1
store_meta = Table(
    "store_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
)

retrains = Table(
    "retrains",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("execution_id", String(200)),
)


class StoreError(RidestreamError):
    """The decision store cannot be opened or used."""


def chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    """``values`` in slices short enough for one IN list."""
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def prediction_columns() -> list[Any]:
    """The columns of a stored prediction, in :class:`StoredPrediction` order."""
    return [
        predictions.c.ride_id,
        predictions.c.target,
        predictions.c.model_name,
        predictions.c.model_version,
        predictions.c.role,
        predictions.c.value,
        predictions.c.source_event_time_ms,
        predictions.c.pickup_time_ms,
        predictions.c.predicted_at_ms,
    ]
