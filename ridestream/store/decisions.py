"""The decision store: each ride's predictions, its join state and decision, its ground truth and
the online evaluation errors. The decision service writes it; the gateway and reports read it.

SQLAlchemy Core over SQLite (the default: one local file in WAL mode, so readers never block the
writer) or PostgreSQL (``RIDESTREAM_DECISIONS__STORE_URL=postgresql+psycopg://...``). Every write
is an insert that ignores what is already there or an update guarded by the row's state, keyed by
ride_id, so a redelivered message changes nothing. Times are epoch milliseconds: UTC instants for
event/decision times, the city's wall clock for pickup, dropoff and ETA (as in the events).

Publication of decisions uses an outbox: a decision is stored unpublished, claimed under a token
with the decisions topic's end offsets before the Kafka transaction that publishes it, and marked
published after the commit. A crash in between leaves an in-flight claim that the next start
resolves by reading the decisions topic from those offsets (see decision_service/service.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    create_engine,
    event,
    false,
    func,
    inspect,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from ridestream.contracts.events import TARGETS, Decision, ModelRef
from ridestream.exceptions import RidestreamError
from ridestream.ml.registry import MODEL_NAMES
from ridestream.ml.scoring import MAX_MINUTES, MIN_MINUTES

logger = logging.getLogger(__name__)

PENDING, DECIDED = "pending", "decided"
# SQLite allows 32,766 bound parameters per statement; stay far below for IN lists.
_CHUNK = 900

metadata = MetaData()

predictions = Table(
    "predictions",
    metadata,
    Column("ride_id", String(128), primary_key=True),
    Column("target", String(16), primary_key=True),
    Column("model_name", String(128), primary_key=True),
    Column("model_version", String(32), primary_key=True),
    Column("role", String(16), nullable=False),
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
    Column("target", String(16), primary_key=True),
    Column("model_name", String(128), primary_key=True),
    Column("model_version", String(32), primary_key=True),
    Column("role", String(16), nullable=False),
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
    Column("target", String(16), primary_key=True),
    Column("model_name", String(128), primary_key=True),
    Column("model_version", String(32), primary_key=True),
    Column("role", String(16), nullable=False),
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


def to_ms(value: datetime) -> int:
    """Epoch milliseconds of a datetime; naive ones (wall-clock times) are read as UTC numbers."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return round(value.timestamp() * 1000)


def epoch_ms(column: Any) -> np.ndarray:
    """Epoch milliseconds of a column of datetimes, as :func:`to_ms` does for one (a zone-aware
    column is read as the UTC instants it holds, a naive one as UTC numbers)."""
    times = column if isinstance(column, pd.Series) else pd.Series(column)
    if not pd.api.types.is_datetime64_any_dtype(times):
        times = pd.to_datetime(times)
    dtype: Any = times.dtype
    unit = dtype.unit if isinstance(dtype, pd.DatetimeTZDtype) else np.datetime_data(dtype)[0]
    if unit not in ("s", "ms"):  # finer than milliseconds: round to whole ones, as to_ms does
        times = times.dt.round("ms")
    # Straight to numpy (~5 µs, against ~0.5 ms through the .dt accessors; a batch asks five times).
    return times.to_numpy(dtype="datetime64[ms]").view(np.int64)


def instant(ms: int) -> datetime:
    """A UTC instant from epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def wall_clock(ms: int) -> datetime:
    """A naive wall-clock time from the epoch milliseconds ``to_ms`` made of it."""
    return instant(ms).replace(tzinfo=None)


def now_ms() -> int:
    """The current UTC instant in epoch milliseconds."""
    return to_ms(datetime.now(UTC))


def _model_ref(model: ModelRef) -> dict[str, str]:
    return {
        "target": model.target,
        "model_name": model.model_name,
        "model_version": model.model_version,
    }


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


class StoredPrediction(NamedTuple):
    """One model's prediction of one target, as stored (a tuple: every decision reads three)."""

    ride_id: str
    target: str
    model_name: str
    model_version: str
    role: str
    value: float
    source_event_time_ms: int
    pickup_time_ms: int
    predicted_at_ms: int


@dataclass(frozen=True)
class RideResult:
    """What the store knows of a ride: for the gateway's read API and for people."""

    ride_id: str
    status: str  # "pending" (predictions arriving) or "decided"
    predictions: list[StoredPrediction]
    decision: Decision | None
    actual: dict[str, float] | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ride_id": self.ride_id,
            "status": self.status,
            "predictions": [p._asdict() for p in self.predictions],
            "decision": self.decision.model_dump(mode="json") if self.decision else None,
            "actual": self.actual,
        }


def decision_from_row(row: Any) -> Decision:
    """The Decision a stored ride row holds."""
    return Decision(
        ride_id=row.ride_id,
        quote=row.quote,
        duration_minutes=row.duration_minutes,
        eta=wall_clock(row.eta_ms) if row.eta_ms is not None else None,
        expected_tip=row.expected_tip,
        actions=json.loads(row.actions or "[]"),
        models=[ModelRef(**m) for m in json.loads(row.models or "[]")],
        partial=bool(row.partial),
        decided_at=instant(row.decided_at_ms),
    )


@dataclass(frozen=True)
class _Compiled:
    """A statement as the driver takes it, and the order of its parameters (None: by name)."""

    sql: str
    positions: tuple[str, ...] | None

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        if self.positions is None:
            return [dict(row) for row in rows]
        if len(self.positions) == 1:
            (name,) = self.positions
            return [(row[name],) for row in rows]
        values = itemgetter(*self.positions)
        return [values(row) for row in rows]


class DecisionStore:
    """The store behind one SQLAlchemy engine; cheap to share within a process."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"unsupported store {self.dialect!r}: sqlite or postgresql")
        if self.dialect == "sqlite" and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self._create_or_check()
        except StoreError:
            raise
        except Exception as exc:  # the driver's own error types vary by database
            raise StoreError(f"cannot open the decision store: {exc}") from exc

    def _create_or_check(self) -> None:
        """Create the tables of a new store; refuse one written by another layout."""
        where = self.engine.url.render_as_string(hide_password=True)
        with self.engine.begin() as conn:
            existing = set(inspect(conn).get_table_names())
            if existing & {t.name for t in metadata.sorted_tables}:
                version = (
                    conn.scalar(select(store_meta.c.value).where(store_meta.c.key == "schema"))
                    if "store_meta" in existing
                    else None
                )
                if version != str(SCHEMA_VERSION):
                    raise StoreError(
                        f"the decision store at {where} has table layout {version or 'unknown'}, "
                        f"this ridestream needs {SCHEMA_VERSION}: point "
                        "RIDESTREAM_DECISIONS__STORE_URL at a new store (or move the old one aside)"
                    )
            metadata.create_all(conn)
            if "store_meta" not in existing:
                conn.execute(store_meta.insert().values(key="schema", value=str(SCHEMA_VERSION)))

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One database transaction: committed when the block ends, rolled back on an error."""
        with self.engine.begin() as conn:
            yield conn

    # -- writes (all idempotent) ----------------------------------------------------------------
    def _insert(self, table: Table) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT."""
        return (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(table)

    def _insert_ignore(self, table: Table) -> Any:
        return self._insert(table).on_conflict_do_nothing()

    def _executemany(
        self,
        conn: Connection,
        key: str,
        build: Callable[[], Any],
        rows: Sequence[Mapping[str, Any]],
    ) -> int:
        """Run the statement ``build()`` makes once for every row, straight through the driver;
        returns the rows it changed.

        SQLAlchemy's executemany prepares every row's parameters in Python (~5 µs a row, more than
        SQLite's own insert): the hot writes are compiled once for the dialect instead, and the
        rows handed to the driver as they are (values are plain Python: str, int, float, bool).
        """
        names = tuple(rows[0])
        compiled = self._compiled.get((key, names))
        if compiled is None:
            statement = build()
            # An INSERT takes its columns from the rows; other statements name their parameters.
            keys = list(names) if statement.is_insert else None
            sql = statement.compile(dialect=self.engine.dialect, column_keys=keys)
            compiled = self._compiled[key, names] = _Compiled(
                sql.string, tuple(sql.positiontup or ()) if sql.positional else None
            )
        return conn.exec_driver_sql(compiled.sql, compiled.parameters(rows)).rowcount

    def add_predictions(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store predictions; one already stored (same ride, target, model version) is kept."""
        if rows:
            self._executemany(
                conn, "add_predictions", lambda: self._insert_ignore(predictions), rows
            )

    def add_actuals(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store ground truth; the first completion of a ride wins."""
        if rows:
            self._executemany(conn, "add_actuals", lambda: self._insert_ignore(actuals), rows)

    def open_joins(self, conn: Connection, seen: dict[str, tuple[int, int]], at_ms: int) -> None:
        """Start the join of rides whose first champion prediction just arrived.

        ``seen`` maps ride_id → (partition, source event time ms); rides already known are kept.
        """
        if seen:
            self._executemany(
                conn,
                "open_joins",
                lambda: self._insert_ignore(rides),
                [
                    {
                        "ride_id": ride_id,
                        "partition": partition,
                        "first_seen_ms": at_ms,
                        "status": PENDING,
                        "source_event_time_ms": event_ms,
                        "published": False,
                    }
                    for ride_id, (partition, event_ms) in seen.items()
                ],
            )

    def record_decisions(self, conn: Connection, decisions: Sequence[Decision]) -> int:
        """Store decisions for rides still pending; a ride decided before keeps its decision.
        Returns how many were stored."""
        if not decisions:
            return 0
        # A handful of action sets and model combinations cover every decision: encode each once.
        actions_json: dict[tuple[str, ...], str] = {}
        models_json: dict[tuple[ModelRef, ...], str] = {}
        rows = []
        for d in decisions:
            actions, models = tuple(d.actions), tuple(d.models)
            if actions not in actions_json:
                actions_json[actions] = json.dumps(list(actions))
            if models not in models_json:
                models_json[models] = json.dumps([_model_ref(m) for m in models])
            rows.append(
                {
                    "decided_ride": d.ride_id,
                    "quote": d.quote,
                    "duration_minutes": d.duration_minutes,
                    "eta_ms": to_ms(d.eta) if d.eta else None,
                    "expected_tip": d.expected_tip,
                    "actions": actions_json[actions],
                    "models": models_json[models],
                    "partial": d.partial,
                    "decided_at_ms": to_ms(d.decided_at),
                }
            )
        return self._executemany(conn, "record_decisions", _decide_pending, rows)

    def evaluate(self, conn: Connection, ride_ids: Sequence[str], at_ms: int) -> int:
        """Record the error of every stored prediction of these rides whose ground truth obeys the
        label convention (``ridestream.ml.scoring``: what training scores too), and add the new
        ones to the running totals. Returns how many were new."""
        # One statement per chunk for every target: the actual of a prediction's own target.
        actual = case({target: actuals.c[target] for target in TARGETS}, value=predictions.c.target)
        added: dict[tuple[str, str, str, str], list[float]] = {}
        for chunk in _chunks(ride_ids):
            query = (
                select(
                    predictions.c.ride_id,
                    predictions.c.target,
                    predictions.c.model_name,
                    predictions.c.model_version,
                    predictions.c.role,
                    predictions.c.value,
                    actual,
                    literal(at_ms, BigInteger),
                )
                .join(actuals, actuals.c.ride_id == predictions.c.ride_id)
                .where(predictions.c.ride_id.in_(chunk), LABELLED)
            )
            # RETURNING gives back only the rows inserted: a redelivery adds nothing twice.
            inserted = conn.execute(
                self._insert_ignore(errors)
                .from_select(
                    [
                        "ride_id",
                        "target",
                        "model_name",
                        "model_version",
                        "role",
                        "predicted",
                        "actual",
                        "evaluated_at_ms",
                    ],
                    query,
                )
                .returning(
                    errors.c.target,
                    errors.c.model_name,
                    errors.c.model_version,
                    errors.c.role,
                    errors.c.predicted,
                    errors.c.actual,
                )
            ).all()
            for row in inserted:
                sums = added.setdefault((row[0], row[1], row[2], row[3]), [0, 0.0, 0.0])
                error = row.predicted - row.actual
                sums[0] += 1
                sums[1] += abs(error)
                sums[2] += error * error
        for (target, name, version, role), (count, sum_abs, sum_squared) in added.items():
            upsert = self._insert(model_totals).values(
                target=target,
                model_name=name,
                model_version=version,
                role=role,
                evaluated=count,
                sum_abs=sum_abs,
                sum_squared=sum_squared,
            )
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=["target", "model_name", "model_version"],
                    set_={
                        "evaluated": model_totals.c.evaluated + upsert.excluded.evaluated,
                        "sum_abs": model_totals.c.sum_abs + upsert.excluded.sum_abs,
                        "sum_squared": model_totals.c.sum_squared + upsert.excluded.sum_squared,
                    },
                )
            )
        return sum(int(sums[0]) for sums in added.values())

    # -- the join -------------------------------------------------------------------------------
    def expired(
        self, conn: Connection, before_ms: int, partitions: Iterable[int], limit: int = 5000
    ) -> list[str]:
        """Pending rides of these partitions whose first prediction arrived before ``before_ms``."""
        return list(
            conn.scalars(
                select(rides.c.ride_id)
                .where(
                    rides.c.status == PENDING,
                    rides.c.first_seen_ms <= before_ms,
                    rides.c.partition.in_(list(partitions)),
                )
                .order_by(rides.c.first_seen_ms, rides.c.ride_id)
                .limit(limit)
            ).all()
        )

    def champion_predictions(
        self, conn: Connection, ride_ids: Sequence[str], *, pending_only: bool = False
    ) -> dict[str, dict[str, StoredPrediction]]:
        """Per ride, per target, the champion prediction a decision uses (with ``pending_only``,
        of the rides still waiting for their decision only).

        Only the target's own model counts (``ride-duration`` for duration: the gateway's
        ``ride-duration-simple`` predictions are stored for evaluation, never decided on). Were two
        champion versions to have predicted a target (the alias moved while a batch was
        redelivered), the earliest prediction wins, so the choice never depends on arrival order.
        """
        chosen: dict[str, dict[str, StoredPrediction]] = {}
        for chunk in _chunks(ride_ids):
            query = select(*_prediction_columns()).where(
                predictions.c.ride_id.in_(chunk),
                predictions.c.role == "champion",
                predictions.c.model_name.in_([MODEL_NAMES[t] for t in TARGETS]),
            )
            if pending_only:
                query = query.join(rides, rides.c.ride_id == predictions.c.ride_id).where(
                    rides.c.status == PENDING
                )
            # All rows at once: iterating a result fetches (slowly) row by row.
            rows = conn.execute(
                query.order_by(
                    predictions.c.ride_id,
                    predictions.c.target,
                    predictions.c.predicted_at_ms,
                    predictions.c.model_version,
                )
            ).all()
            for row in rows:
                by_target = chosen.setdefault(row[0], {})
                if row[1] not in by_target:
                    by_target[row[1]] = StoredPrediction._make(row)
        return chosen

    # -- the outbox -----------------------------------------------------------------------------
    def claim_unpublished(
        self,
        conn: Connection,
        instance: str,
        token: str,
        partitions: Iterable[int],
        start_offsets: dict[int, int],
        known: dict[str, Decision] | None = None,
    ) -> list[Decision]:
        """Claim this instance's unpublished decisions (of its partitions) for one publication.

        ``known`` holds decisions the caller has just made and stored: they are not read back.
        """
        partitions = list(partitions)
        claimed = conn.scalars(
            update(rides)
            .where(
                rides.c.status == DECIDED,
                rides.c.published.is_(False),
                rides.c.partition.in_(partitions),
            )
            .values(publish_token=token)
            .returning(rides.c.ride_id)
        ).all()
        if not claimed:
            return []
        known = known or {}
        unknown = sorted(set(claimed) - set(known))
        read_back = {
            row.ride_id: decision_from_row(row)
            for chunk in _chunks(unknown)
            for row in conn.execute(select(rides).where(rides.c.ride_id.in_(chunk)))
        }
        conn.execute(outbox.delete().where(outbox.c.instance == instance))
        conn.execute(
            outbox.insert().values(
                instance=instance, token=token, start_offsets=json.dumps(start_offsets)
            )
        )
        return [known.get(ride_id) or read_back[ride_id] for ride_id in sorted(claimed)]

    def in_flight(self, instance: str) -> tuple[str, dict[int, int]] | None:
        """The claim this instance left when it stopped between claim and confirmation."""
        with self.engine.connect() as conn:
            row = conn.execute(select(outbox).where(outbox.c.instance == instance)).first()
        if row is None:
            return None
        return row.token, {int(p): o for p, o in json.loads(row.start_offsets).items()}

    def settle(self, instance: str, token: str, published: Iterable[str] | None = None) -> None:
        """Close a claim: its decisions are published (all, or those in ``published`` when a
        crashed claim is resolved; the rest are released to be published again)."""
        with self.begin() as conn:
            claimed = rides.c.publish_token == token
            if published is None:
                conn.execute(update(rides).where(claimed).values(published=True))
            else:
                ids = list(published)
                for chunk in _chunks(ids):
                    conn.execute(
                        update(rides)
                        .where(claimed, rides.c.ride_id.in_(chunk))
                        .values(published=True)
                    )
                conn.execute(
                    update(rides)
                    .where(claimed, rides.c.published.is_(False))
                    .values(publish_token=None)
                )
            conn.execute(outbox.delete().where(outbox.c.instance == instance))

    # -- retraining -----------------------------------------------------------------------------
    def last_retrain_ms(self) -> int | None:
        """When retraining was last triggered (or would have been, without Kestra)."""
        with self.engine.connect() as conn:
            last = conn.scalar(select(func.max(retrains.c.at_ms)))
        return int(last) if last is not None else None

    def record_retrain(self, at_ms: int, reason: str, execution_id: str | None) -> None:
        """Remember a retraining trigger (the cooldown survives restarts)."""
        with self.begin() as conn:
            conn.execute(
                retrains.insert().values(at_ms=at_ms, reason=reason, execution_id=execution_id)
            )

    # -- reads ----------------------------------------------------------------------------------
    def ride(self, ride_id: str) -> RideResult | None:
        """Everything stored of one ride, or None when the store has never heard of it."""
        with self.engine.connect() as conn:
            row = conn.execute(select(rides).where(rides.c.ride_id == ride_id)).first()
            stored = [
                StoredPrediction(*p)
                for p in conn.execute(
                    select(*_prediction_columns())
                    .where(predictions.c.ride_id == ride_id)
                    .order_by(predictions.c.target, predictions.c.role, predictions.c.model_version)
                )
            ]
            actual = conn.execute(select(actuals).where(actuals.c.ride_id == ride_id)).first()
        if row is None and not stored and actual is None:
            return None
        decided = row is not None and row.status == DECIDED
        return RideResult(
            ride_id=ride_id,
            status=DECIDED if decided else PENDING,
            predictions=stored,
            decision=decision_from_row(row) if decided else None,
            actual=(
                {"duration": actual.duration, "cost": actual.cost, "tip": actual.tip}
                if actual is not None
                else None
            ),
        )

    def counts(self) -> dict[str, int]:
        """Totals for reports: decisions (and partial ones), pending joins, actuals, predictions."""
        with self.engine.connect() as conn:
            by_status: dict[str, int] = dict(
                conn.execute(select(rides.c.status, func.count()).group_by(rides.c.status)).all()
            )
            return {
                "decisions": int(by_status.get(DECIDED, 0)),
                "partial_decisions": int(
                    conn.scalar(
                        select(func.count()).where(rides.c.status == DECIDED, rides.c.partial)
                    )
                    or 0
                ),
                "pending": int(by_status.get(PENDING, 0)),
                "unpublished": int(
                    conn.scalar(
                        select(func.count()).where(
                            rides.c.status == DECIDED, rides.c.published.is_(False)
                        )
                    )
                    or 0
                ),
                "predictions": int(conn.scalar(select(func.count()).select_from(predictions)) or 0),
                "actuals": int(conn.scalar(select(func.count()).select_from(actuals)) or 0),
                "evaluated": int(conn.scalar(select(func.count()).select_from(errors)) or 0),
            }

    def evaluation(self, window_rides: int | None = None) -> pd.DataFrame:
        """Per target and model version: count, MAE and RMSE, over all rides (the running totals)
        or over each version's last ``window_rides`` evaluated rides."""
        if window_rides is not None:
            return evaluation_of(self.recent_errors(window_rides))
        with self.engine.connect() as conn:
            totals = conn.execute(
                select(model_totals).order_by(
                    model_totals.c.target, model_totals.c.model_name, model_totals.c.model_version
                )
            ).all()
        rows = [
            (
                t.target,
                t.model_name,
                t.model_version,
                t.role,
                t.evaluated,
                t.sum_abs / t.evaluated,
                (t.sum_squared / t.evaluated) ** 0.5,
            )
            for t in totals
        ]
        return pd.DataFrame(rows, columns=EVALUATION_COLUMNS)

    def recent_errors(self, window_rides: int) -> pd.DataFrame:
        """Each model version's last ``window_rides`` evaluated predictions (for comparisons)."""
        with self.engine.connect() as conn:
            versions = conn.execute(
                select(
                    model_totals.c.target, model_totals.c.model_name, model_totals.c.model_version
                )
            ).all()
            frames = [self._recent(conn, *version, window_rides) for version in versions]
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame(columns=[c.name for c in errors.columns])
        return pd.concat(frames, ignore_index=True)

    @staticmethod
    def _recent(conn: Connection, target: str, name: str, version: str, limit: int) -> pd.DataFrame:
        query = (
            select(errors)
            .where(
                errors.c.target == target,
                errors.c.model_name == name,
                errors.c.model_version == version,
            )
            .order_by(errors.c.evaluated_at_ms.desc(), errors.c.ride_id.desc())
            .limit(limit)
        )
        # Rows as tuples: mappings cost ~10 µs a row here, for a window read every refresh.
        return pd.DataFrame(conn.execute(query).all(), columns=[c.name for c in errors.columns])

    def errors_frame(self, target: str | None = None) -> pd.DataFrame:
        """Every evaluated prediction (ride, model version, predicted, actual, when)."""
        query = select(errors).order_by(errors.c.evaluated_at_ms, errors.c.ride_id)
        if target is not None:
            query = query.where(errors.c.target == target)
        with self.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(query).mappings().all())
        if frame.empty:
            return pd.DataFrame(columns=[c.name for c in errors.columns])
        return frame


def _decide_pending() -> Any:
    """The UPDATE that stores a decision of a ride still pending (constants inline: the rows
    carry only the decision's own values)."""
    return (
        update(rides)
        .where(
            rides.c.ride_id == bindparam("decided_ride"),
            rides.c.status == literal_column(f"'{PENDING}'"),
        )
        .values(
            status=literal_column(f"'{DECIDED}'"),
            quote=bindparam("quote"),
            duration_minutes=bindparam("duration_minutes"),
            eta_ms=bindparam("eta_ms"),
            expected_tip=bindparam("expected_tip"),
            actions=bindparam("actions"),
            models=bindparam("models"),
            partial=bindparam("partial"),
            decided_at_ms=bindparam("decided_at_ms"),
            published=false(),
        )
    )


EVALUATION_COLUMNS = ["target", "model_name", "model_version", "role", "count", "mae", "rmse"]


def evaluation_of(errors_frame: pd.DataFrame) -> pd.DataFrame:
    """Count, MAE and RMSE per target and model version of a frame of evaluated predictions
    (rows of the ``errors`` table), in target, name, version order."""
    if errors_frame.empty:
        return pd.DataFrame(columns=EVALUATION_COLUMNS)
    error = errors_frame["predicted"] - errors_frame["actual"]
    frame = errors_frame.assign(absolute=error.abs(), squared=error**2)
    grouped = frame.groupby(["target", "model_name", "model_version"], sort=True)
    result = grouped.agg(
        role=("role", "first"),
        count=("absolute", "size"),
        mae=("absolute", "mean"),
        mse=("squared", "mean"),
    ).reset_index()
    result["rmse"] = result.pop("mse") ** 0.5
    return result[EVALUATION_COLUMNS]


def _prediction_columns() -> list[Any]:
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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: the gateway and reports read while the service writes. NORMAL sync is durable across
    # process crashes in WAL mode (only an OS crash can lose the last commits).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
