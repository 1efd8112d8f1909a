"""Python models of the Avro contracts, with the value rules the schemas cannot express.

The ``.avsc`` files are the source of truth for shape; ``tests/ridestream/test_events.py`` proves
every model here has exactly its schema's fields, types and optionality. What Avro cannot say
(zones are TLC LocationIDs, distances are not negative, a taxi seats at most nine) is said here,
once, as bounds that the vectorized validator of the stream reuses.

An estimated distance has no upper bound and 0 is allowed: a backend's estimate is sometimes
missing (sent as 0), zero or absurd, and such a ride is still a ride to predict. The feature
function treats those distances as unknown (``ridestream.ml.features.MAX_PLAUSIBLE_MILES``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, NaiveDatetime
from pydantic import ValidationError as PydanticValidationError

from ridestream.contracts.exceptions import InvalidEventError
from ridestream.contracts.schemas import DECISION, PREDICTION, RIDE_COMPLETED, RIDE_STARTED

# TLC LocationIDs: 1-263 are zones, 264 "Unknown" and 265 "Outside of NYC".
ZONE_MIN, ZONE_MAX = 1, 265
MAX_PASSENGERS = 9
MAX_RIDE_MINUTES = 24 * 60.0

Source = Literal["backend", "gateway"]
Target = Literal["duration", "cost", "tip"]
Role = Literal["champion", "challenger"]
TARGETS: tuple[Target, ...] = ("duration", "cost", "tip")


def utc_now() -> datetime:
    """The current instant, timezone-aware, truncated to Avro timestamp-millis precision."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Event(BaseModel):
    """Base of every event model: immutable, no unknown fields, tied to one schema by name."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str]

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        """Validate a mapping; a bad value raises InvalidEventError naming the field."""
        try:
            return cls.model_validate(data)
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or cls.__name__
            raise InvalidEventError(field, first["msg"]) from exc

    def to_record(self) -> dict[str, Any]:
        """The dict fastavro writes."""
        return self.model_dump()


class RideStarted(Event):
    """A ride has started: what the backend knows at pickup."""

    schema_name: ClassVar[str] = RIDE_STARTED

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    ride_id: str = Field(min_length=1, max_length=128)
    event_time: AwareDatetime = Field(default_factory=utc_now)
    source: Source = "backend"
    enhanced: bool = False
    pickup_time: NaiveDatetime
    pickup_zone: int = Field(ge=ZONE_MIN, le=ZONE_MAX)
    dropoff_zone: int = Field(ge=ZONE_MIN, le=ZONE_MAX)
    trip_distance: float = Field(ge=0.0, allow_inf_nan=False)
    passenger_count: int | None = Field(default=None, ge=0, le=MAX_PASSENGERS)
    vendor_id: int | None = Field(default=None, ge=1, le=99)
    rate_code: int | None = Field(default=None, ge=1, le=99)
    payment_type: int | None = Field(default=None, ge=0, le=6)
    trip_type: int | None = Field(default=None, ge=1, le=2)


class RideCompleted(Event):
    """A ride has ended: the ground truth."""

    schema_name: ClassVar[str] = RIDE_COMPLETED

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    ride_id: str = Field(min_length=1, max_length=128)
    event_time: AwareDatetime = Field(default_factory=utc_now)
    dropoff_time: NaiveDatetime
    duration_minutes: float = Field(ge=0.0, le=MAX_RIDE_MINUTES, allow_inf_nan=False)
    fare_amount: float = Field(allow_inf_nan=False)
    tip_amount: float = Field(ge=0.0, allow_inf_nan=False)
    total_amount: float = Field(allow_inf_nan=False)

    @property
    def cost(self) -> float:
        """What the rider paid before tip: the cost target."""
        return self.total_amount - self.tip_amount


class Prediction(Event):
    """One model's prediction of one target for one ride."""

    schema_name: ClassVar[str] = PREDICTION

    ride_id: str = Field(min_length=1, max_length=128)
    target: Target
    value: float = Field(allow_inf_nan=False)
    model_name: str
    model_version: str
    role: Role
    source_event_id: uuid.UUID
    source_event_time: AwareDatetime
    pickup_time: NaiveDatetime
    predicted_at: AwareDatetime = Field(default_factory=utc_now)


class ModelRef(BaseModel):
    """A model version a decision used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Target
    model_name: str
    model_version: str


class Decision(Event):
    """What the decision service made of a ride's predictions."""

    schema_name: ClassVar[str] = DECISION

    ride_id: str = Field(min_length=1, max_length=128)
    quote: float | None = None
    duration_minutes: float | None = None
    eta: NaiveDatetime | None = None
    expected_tip: float | None = None
    actions: list[str] = Field(default_factory=list)
    models: list[ModelRef] = Field(default_factory=list)
    partial: bool = False
    decided_at: AwareDatetime = Field(default_factory=utc_now)


EVENT_MODELS: dict[str, type[Event]] = {
    model.schema_name: model for model in (RideStarted, RideCompleted, Prediction, Decision)
}
