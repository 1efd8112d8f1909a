"""What the store hands back: stored predictions, a ride's record, a decision from its row."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from ridestream.clock import instant, wall_clock
from ridestream.contracts.events import Decision, ModelRef


def model_ref(model: ModelRef) -> dict[str, str]:
    """A decision's model reference as stored (JSON)."""
    return {
        "target": model.target,
        "model_name": model.model_name,
        "model_version": model.model_version,
    }


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
