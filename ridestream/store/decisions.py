"""The decision store: each ride's predictions, its join state and decision, its ground truth and
the online evaluation errors. The decision service writes it; the gateway and reports read it.

SQLAlchemy Core over SQLite (the default: one local file in WAL mode, so readers never block the
writer) or PostgreSQL (``RIDESTREAM_DECISIONS__STORE_URL=postgresql+psycopg://...``). Every write
is an insert that ignores what is already there or an update guarded by the row's state, keyed by
ride_id, so a redelivered message changes nothing. Times are epoch milliseconds: UTC instants for
event/decision times, the city's wall clock for pickup, dropoff and ETA (as in the events).

The class is assembled from its parts: the writes here, the join's reads (``joins.py``), the
outbox (``outbox.py``), the reports (``reports.py``); the tables are in ``tables.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Table,
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

from ridestream.clock import to_ms
from ridestream.contracts.events import TARGETS, Decision, ModelRef
from ridestream.store.joins import JoinReads
from ridestream.store.outbox import Outbox
from ridestream.store.records import model_ref
from ridestream.store.reports import Reports
from ridestream.store.sql import CompiledStatements
from ridestream.store.tables import (
    DECIDED,
    LABELLED,
    PENDING,
    SCHEMA_VERSION,
    StoreError,
    actuals,
    chunks,
    errors,
    metadata,
    model_totals,
    prediction_columns,
    predictions,
    retrains,
    rides,
    store_meta,
)

logger = logging.getLogger(__name__)


class DecisionStore(JoinReads, Outbox, Reports):
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
        self._statements = CompiledStatements(self.engine.dialect)
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

    def add_predictions(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store predictions; one already stored (same ride, target, model version) is kept."""
        if rows:
            self._statements.executemany(
                conn, "add_predictions", lambda: self._insert_ignore(predictions), rows
            )

    def add_actuals(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store ground truth; the first completion of a ride wins."""
        if rows:
            self._statements.executemany(
                conn, "add_actuals", lambda: self._insert_ignore(actuals), rows
            )

    def open_joins(self, conn: Connection, seen: dict[str, tuple[int, int]], at_ms: int) -> None:
        """Start the join of rides whose first champion prediction just arrived.

        ``seen`` maps ride_id → (partition, source event time ms); rides already known are kept.
        """
        if seen:
            self._statements.executemany(
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
                models_json[models] = json.dumps([model_ref(m) for m in models])
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
        return self._statements.executemany(conn, "record_decisions", _decide_pending, rows)

    def evaluate(self, conn: Connection, ride_ids: Sequence[str], at_ms: int) -> int:
        """Record the error of every stored prediction of these rides whose ground truth obeys the
        label convention (``ridestream.ml.scoring``: what training scores too), and add the new
        ones to the running totals. Returns how many were new."""
        # One statement per chunk for every target: the actual of a prediction's own target.
        actual = case({target: actuals.c[target] for target in TARGETS}, value=predictions.c.target)
        added: dict[tuple[str, str, str, str], list[float]] = {}
        for chunk in chunks(ride_ids):
            query = (
                select(
                    *prediction_columns()[:6],  # ride, target, model name, version, role, value
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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: the gateway and reports read while the service writes. NORMAL sync is durable across
    # process crashes in WAL mode (only an OS crash can lose the last commits).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
