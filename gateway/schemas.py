"""The gateway API's request and response models, and reading a request body into one."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, NaiveDatetime, ValidationError

from ridestream.contracts.events import MAX_PASSENGERS, ZONE_MAX, ZONE_MIN
from ridestream.store.records import RideResult

# A short ride (East Harlem North → Upper East Side North): the OpenAPI example, and what the
# tests and the gateway benchmark send.
EXAMPLE_RIDE: dict[str, Any] = {
    "pickup_zone": 74,
    "dropoff_zone": 236,
    "trip_distance": 2.4,
    "pickup_time": "2023-02-01T08:30:00",
    "passenger_count": 1,
    "payment_type": 1,
}


class RideRequest(BaseModel):
    """A ride as the app knows it at pickup."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{**EXAMPLE_RIDE, "enhanced": True}]},
    )

    ride_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Your id for the ride (an idempotency key); one is made when absent.",
    )
    client_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="Keeps a client on one model."
    )
    pickup_time: NaiveDatetime | None = Field(
        default=None, description="The city's wall-clock pickup time; now when absent."
    )
    pickup_zone: int = Field(ge=ZONE_MIN, le=ZONE_MAX, description="TLC LocationID")
    dropoff_zone: int = Field(ge=ZONE_MIN, le=ZONE_MAX, description="TLC LocationID")
    trip_distance: float | None = Field(
        default=None,
        ge=0.0,
        allow_inf_nan=False,
        description="Estimated miles. Absent, null, 0 or implausible (over 100) means unknown: "
        "the models then answer from the zone pair's typical distance.",
    )
    passenger_count: int | None = Field(default=None, ge=0, le=MAX_PASSENGERS)
    vendor_id: int | None = Field(default=None, ge=1, le=99)
    rate_code: int | None = Field(default=None, ge=1, le=99)
    payment_type: int | None = Field(default=None, ge=0, le=6)
    trip_type: int | None = Field(default=None, ge=1, le=2)
    enhanced: bool = Field(default=False, description="Also put the ride on the stream.")


def parse_ride(body: bytes) -> RideRequest:
    """The request body as a ride, validated in one pass of pydantic's Rust JSON parser.

    FastAPI's own body parameter decodes the JSON in Python and validates the dict through its
    dependency machinery, a large share of a request's CPU. Errors keep FastAPI's shape: 422, ``detail`` with ``loc`` ``["body", field]``.
    """
    try:
        return RideRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = [_body_error(error) for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def _body_error(error: Any) -> dict[str, Any]:
    """A pydantic error as FastAPI words a body's: under ``body``, and never echoing raw bytes (a
    body that is not JSON, or not even UTF-8, would break the error's own JSON encoding)."""
    located = {**error, "loc": ("body", *error["loc"])}
    if isinstance(located.get("input"), bytes):
        del located["input"]
    elif "input" in located:
        located["input"] = _finite(located["input"])
    return located


def _finite(value: Any) -> Any:
    """A value with every NaN or infinity (JSON has none: ``NaN``, ``1e999``) as its name, so
    the 422 that refuses it can be encoded instead of failing as a 500."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


# The route reads its body itself (parse_ride); this tells OpenAPI, and so clients and
# schemathesis, what the body is.
RIDE_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": RideRequest.model_json_schema()}},
    }
}


class ModelInfo(BaseModel):
    name: str
    version: str
    role: Literal["champion", "challenger"]


class Enhanced(BaseModel):
    status: Literal["pending", "unavailable"]
    href: str | None = None
    events: str | None = None
    reason: str | None = None


class PredictionResponse(BaseModel):
    ride_id: str
    duration_minutes: float
    model: ModelInfo
    enhanced: Enhanced | None = None


class TargetPrediction(BaseModel):
    target: str
    value: float
    model_name: str
    model_version: str
    role: str
    predicted_at: AwareDatetime = Field(description="When the model made it (UTC).")


class RideResponse(BaseModel):
    ride_id: str
    status: Literal["pending", "decided"]
    predictions: list[TargetPrediction]
    decision: dict[str, Any] | None
    actual: dict[str, float] | None


def ride_response(result: RideResult) -> RideResponse:
    """The API's view of what the store holds for a ride."""
    return RideResponse(
        ride_id=result.ride_id,
        status=result.status,  # type: ignore[arg-type]
        predictions=[
            TargetPrediction(
                target=p.target,
                value=p.value,
                model_name=p.model_name,
                model_version=p.model_version,
                role=p.role,
                predicted_at=datetime.fromtimestamp(p.predicted_at_ms / 1000, UTC),
            )
            for p in result.predictions
        ],
        decision=result.decision.model_dump(mode="json") if result.decision else None,
        actual=result.actual,
    )
