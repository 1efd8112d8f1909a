"""The join's reads of the decision store: the rides waiting for their decision, and the champion
predictions a decision uses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, select

from ridestream.contracts.events import TARGETS
from ridestream.ml.registry import MODEL_NAMES
from ridestream.store.records import StoredPrediction
from ridestream.store.tables import DECIDED, PENDING, chunks, prediction_columns, predictions, rides


class JoinReads:
    """The join half of :class:`ridestream.store.decisions.DecisionStore`."""

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
        for chunk in chunks(ride_ids):
            query = _champions().where(predictions.c.ride_id.in_(chunk))
            if pending_only:
                query = query.join(rides, rides.c.ride_id == predictions.c.ride_id).where(
                    rides.c.status == PENDING
                )
            _choose(conn, query, chosen)
        return chosen

    def pending_champions(
        self, conn: Connection, partitions: Iterable[int]
    ) -> dict[str, dict[str, StoredPrediction]]:
        """What :meth:`champion_predictions` gives for every ride of these partitions still
        waiting for its decision (what a replica that takes the partitions over holds in memory)."""
        query = (
            _champions()
            .join(rides, rides.c.ride_id == predictions.c.ride_id)
            .where(rides.c.status == PENDING, rides.c.partition.in_(list(partitions)))
        )
        chosen: dict[str, dict[str, StoredPrediction]] = {}
        _choose(conn, query, chosen)
        return chosen

    def decided_at(self, conn: Connection, ride_ids: Sequence[str]) -> dict[str, int]:
        """When each of these rides was decided (rides not decided are left out)."""
        found: dict[str, int] = {}
        for chunk in chunks(ride_ids):
            found.update(
                conn.execute(
                    select(rides.c.ride_id, rides.c.decided_at_ms).where(
                        rides.c.ride_id.in_(chunk), rides.c.status == DECIDED
                    )
                )
                .tuples()
                .all()
            )
        return found

    def still_pending(self, conn: Connection, ride_ids: Sequence[str]) -> set[str]:
        """Those of these rides still waiting for their decision."""
        return {
            ride_id
            for chunk in chunks(ride_ids)
            for ride_id in conn.scalars(
                select(rides.c.ride_id).where(rides.c.ride_id.in_(chunk), rides.c.status == PENDING)
            )
        }


def _champions() -> Any:
    """The champion predictions a decision may use: the target's own model only."""
    return select(*prediction_columns()).where(
        predictions.c.role == "champion",
        predictions.c.model_name.in_([MODEL_NAMES[t] for t in TARGETS]),
    )


def _choose(conn: Connection, query: Any, chosen: dict[str, dict[str, StoredPrediction]]) -> None:
    """Add the earliest prediction of each ride and target the query finds (by prediction time,
    then version) to ``chosen``."""
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
