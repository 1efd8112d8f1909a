"""What the store tells people and the gateway: a ride, counts, the online evaluation."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from ridestream.store.records import RideResult, StoredPrediction, decision_from_row
from ridestream.store.tables import (
    DECIDED,
    PENDING,
    actuals,
    errors,
    model_totals,
    prediction_columns,
    predictions,
    rides,
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


class Reports:
    """The read half of :class:`ridestream.store.decisions.DecisionStore`."""

    engine: Engine

    def ride(self, ride_id: str) -> RideResult | None:
        """Everything stored of one ride, or None when the store has never heard of it."""
        with self.engine.connect() as conn:
            row = conn.execute(select(rides).where(rides.c.ride_id == ride_id)).first()
            stored = [
                StoredPrediction(*p)
                for p in conn.execute(
                    select(*prediction_columns())
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
        # Rows as tuples: mappings cost far more per row, for a window read every refresh.
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
