"""The .avsc files are the source of truth: every Python event model must match its schema."""

from __future__ import annotations

import types
import typing
import uuid
from datetime import datetime
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import AwareDatetime, BaseModel, NaiveDatetime

from ridestream.contracts.events import EVENT_MODELS, Event, RideCompleted, RideStarted
from ridestream.contracts.exceptions import InvalidEventError
from ridestream.contracts.schemas import load_store
from ridestream.serde.codecs import SingleObjectSerde

PY_OF_AVRO = {
    "string": str,
    "int": int,
    "long": int,
    "double": float,
    "float": float,
    "boolean": bool,
}
# An instant must be timezone-aware and a local wall-clock time naive, or the meaning drifts.
PY_OF_LOGICAL = {
    "uuid": uuid.UUID,
    "timestamp-millis": AwareDatetime,
    "local-timestamp-millis": NaiveDatetime,
}


def avro_matches(annotation: Any, avro: Any) -> bool:
    """Whether a Python annotation describes exactly the values of an Avro type."""
    if isinstance(avro, list):  # a union: ["null", T] ↔ T | None
        branches = [b for b in avro if b != "null"]
        args = get_args(annotation)
        if "null" in avro and type(None) not in args:
            return False
        rest = [a for a in args if a is not type(None)]
        return len(rest) == len(branches) == 1 and avro_matches(rest[0], branches[0])
    if get_origin(annotation) in (types.UnionType, typing.Union):
        return False  # optional in Python, required in Avro
    if isinstance(avro, str):
        return PY_OF_AVRO.get(avro) is annotation
    if "logicalType" in avro:
        return PY_OF_LOGICAL[avro["logicalType"]] is annotation
    if avro["type"] == "enum":
        return get_origin(annotation) is Literal and list(get_args(annotation)) == avro["symbols"]
    if avro["type"] == "array":
        return get_origin(annotation) is list and avro_matches(
            get_args(annotation)[0], avro["items"]
        )
    if avro["type"] == "record":
        return (
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and model_matches(annotation, avro) == []
        )
    return avro_matches(annotation, avro["type"])


def model_matches(model: type[BaseModel], schema: dict[str, Any]) -> list[str]:
    problems = []
    model_fields = list(model.model_fields)
    schema_fields = [f["name"] for f in schema["fields"]]
    if model_fields != schema_fields:
        problems.append(f"fields {model_fields} != schema {schema_fields}")
    for field in schema["fields"]:
        info = model.model_fields.get(field["name"])
        if info is None:
            continue
        if not avro_matches(info.annotation, field["type"]):
            problems.append(f"{field['name']}: {info.annotation} does not match {field['type']}")
        if "default" in field and info.is_required():
            problems.append(f"{field['name']}: the schema has a default, the model requires it")
    return problems


@pytest.mark.parametrize("name", sorted(EVENT_MODELS))
def test_each_model_matches_its_schema(name: str) -> None:
    schema = load_store().latest(name).raw
    assert model_matches(EVENT_MODELS[name], schema) == []


def test_the_checker_notices_a_drifted_model() -> None:
    class Drifted(Event):
        ride_id: str
        pickup_zone: int | None = None

    schema = {
        "fields": [{"name": "ride_id", "type": "string"}, {"name": "pickup_zone", "type": "int"}]
    }
    assert model_matches(Drifted, schema) == ["pickup_zone: int | None does not match int"]


def valid_ride(**changes: Any) -> dict[str, Any]:
    return {
        "ride_id": "r-1",
        "pickup_time": datetime(2023, 2, 1, 8, 30),
        "pickup_zone": 74,
        "dropoff_zone": 75,
        "trip_distance": 1.2,
        "passenger_count": 1,
        **changes,
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"trip_distance": -1.0}, "trip_distance"),
        ({"pickup_zone": 999}, "pickup_zone"),
        ({"dropoff_zone": 0}, "dropoff_zone"),
        ({"passenger_count": 40}, "passenger_count"),
        ({"pickup_time": None}, "pickup_time"),
        ({"ride_id": ""}, "ride_id"),
        ({"payment_type": 9}, "payment_type"),
        ({"trip_distance": float("nan")}, "trip_distance"),
        ({"surge": 2}, "surge"),
    ],
)
def test_invalid_rides_are_rejected_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEventError) as raised:
        RideStarted.parse(valid_ride(**changes))
    assert raised.value.field == field


def test_a_missing_required_field_is_named() -> None:
    ride = valid_ride()
    del ride["pickup_time"]
    with pytest.raises(InvalidEventError, match="pickup_time"):
        RideStarted.parse(ride)


@pytest.mark.parametrize("model", [RideStarted, RideCompleted])
def test_a_model_encodes_and_decodes_to_itself(model: type[Event]) -> None:
    event: Event
    if model is RideStarted:
        event = RideStarted.parse(valid_ride())
    else:
        event = RideCompleted.parse(
            {
                "ride_id": "r",
                "dropoff_time": datetime(2023, 2, 1, 9),
                "duration_minutes": 12.5,
                "fare_amount": 14.2,
                "tip_amount": 2.0,
                "total_amount": 19.0,
            }
        )
    serde = SingleObjectSerde(model.schema_name)
    assert model.parse(serde.decode(serde.encode(event.to_record()))) == event
