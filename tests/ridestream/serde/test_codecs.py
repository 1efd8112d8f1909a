from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ridestream.contracts.exceptions import InvalidEventError
from ridestream.contracts.schemas import (
    DECISION,
    PREDICTION,
    RIDE_COMPLETED,
    RIDE_STARTED,
    SchemaStore,
    default_schemas_dir,
    load_store,
)
from ridestream.serde.codecs import (
    HEADER_SIZE,
    MARKER,
    ConfluentSerde,
    SingleObjectSerde,
    make_serde,
)
from ridestream.serde.exceptions import (
    CorruptPayloadError,
    NotSingleObjectError,
    UnknownSchemaError,
    WrongRecordTypeError,
)
from ridestream.settings import Settings
from tests.strategies import from_avro

RECORD_TYPES = [RIDE_STARTED, RIDE_COMPLETED, PREDICTION, DECISION]


def ride() -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4(),
        "ride_id": "r-1",
        "event_time": datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
        "source": "backend",
        "enhanced": False,
        "pickup_time": datetime(2023, 2, 1, 8, 30),
        "pickup_zone": 74,
        "dropoff_zone": 75,
        "trip_distance": 1.2,
        "passenger_count": 1,
        "vendor_id": 2,
        "rate_code": 1,
        "payment_type": 1,
        "trip_type": 1,
    }


@pytest.mark.parametrize("name", RECORD_TYPES)
def test_every_record_type_roundtrips_generated_values(name: str) -> None:
    serde = SingleObjectSerde(name)

    @settings(max_examples=150, deadline=None)
    @given(from_avro(serde.schema.raw))
    def roundtrip(record: dict[str, Any]) -> None:
        data = serde.encode(record)
        assert data[:2] == MARKER
        assert data[2:HEADER_SIZE] == serde.schema.fingerprint
        assert serde.decode(data) == record

    roundtrip()


def test_the_frame_is_marker_fingerprint_body() -> None:
    serde = SingleObjectSerde(RIDE_STARTED)
    data = serde.encode(ride())
    assert data[:2] == b"\xc3\x01"
    assert serde.writer_schema(data) is load_store().latest(RIDE_STARTED)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"", NotSingleObjectError),
        (b"garbage bytes that are not avro", NotSingleObjectError),
        (MARKER + b"\x00" * 8 + b"body", UnknownSchemaError),
    ],
)
def test_undecodable_payloads_raise_their_kind(payload: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        SingleObjectSerde(RIDE_STARTED).decode(payload)


def test_truncated_and_padded_bodies_are_corrupt() -> None:
    serde = SingleObjectSerde(RIDE_STARTED)
    data = serde.encode(ride())
    with pytest.raises(CorruptPayloadError) as truncated:
        serde.decode(data[:-5])
    assert truncated.value.kind == "corrupt_payload"
    with pytest.raises(CorruptPayloadError, match="trailing"):
        serde.decode(data + b"\x00\x01")


def test_a_record_of_another_type_is_refused() -> None:
    completed = SingleObjectSerde(RIDE_COMPLETED).encode(
        {
            "event_id": uuid.uuid4(),
            "ride_id": "r",
            "event_time": datetime.now(UTC),
            "dropoff_time": datetime(2023, 2, 1),
            "duration_minutes": 3.0,
            "fare_amount": 5.0,
            "tip_amount": 0.0,
            "total_amount": 6.0,
        }
    )
    with pytest.raises(WrongRecordTypeError, match="expected RideStarted, got RideCompleted"):
        SingleObjectSerde(RIDE_STARTED).decode(completed)


def test_encoding_a_value_of_the_wrong_type_names_the_field() -> None:
    bad = {**ride(), "dropoff_zone": "Astoria"}
    with pytest.raises(InvalidEventError) as raised:
        SingleObjectSerde(RIDE_STARTED).encode(bad)
    assert raised.value.field == "dropoff_zone"


def evolved_store(tmp_path: Path) -> SchemaStore:
    """The project's schemas plus a RideStarted v2 with one new optional field."""
    shutil.copytree(default_schemas_dir(), tmp_path, dirs_exist_ok=True)
    v2 = json.loads((tmp_path / "ride_started.v1.avsc").read_text())
    v2["fields"].append({"name": "surge_multiplier", "type": ["null", "double"], "default": None})
    (tmp_path / "ride_started.v2.avsc").write_text(json.dumps(v2))
    return SchemaStore(tmp_path)


@settings(max_examples=50, deadline=None)
@given(surge=st.none() | st.floats(1.0, 5.0))
def test_schema_evolution_old_reads_new_and_new_reads_old(
    tmp_path_factory: pytest.TempPathFactory, surge: float | None
) -> None:
    store = evolved_store(tmp_path_factory.mktemp("schemas"))
    old = SingleObjectSerde(RIDE_STARTED, store, version=1)
    new = SingleObjectSerde(RIDE_STARTED, store, version=2)
    record = ride()

    new_data = new.encode({**record, "surge_multiplier": surge})
    assert old.decode(new_data) == record  # forward: the old reader drops the new field

    old_data = old.encode(record)
    assert new.decode(old_data) == {**record, "surge_multiplier": None}  # backward: default fills


def test_confluent_framing_against_the_client_librarys_mock_registry() -> None:
    # No Confluent-compatible registry server can be run here (see README); this is the
    # confluent_kafka client's own in-memory registry ("mock://"), with the real serializers.
    settings_ = Settings(_env_file=None, schema_registry_url="mock://ridestream-test")  # type: ignore[call-arg]
    serde = make_serde(RIDE_STARTED, settings_)
    assert isinstance(serde, ConfluentSerde)
    data = serde.encode(ride(), "rides.started")
    assert data[0] == 0  # magic byte, then a 4-byte schema id
    schema_id = int.from_bytes(data[1:5], "big")
    assert "RideStarted" in serde.registry.get_schema(schema_id).schema_str
    decoded = serde.decode(data, "rides.started")
    assert decoded["ride_id"] == "r-1"
    assert decoded["pickup_zone"] == 74
    with pytest.raises(NotSingleObjectError):
        serde.decode(b"\xc3\x01whatever", "rides.started")


def test_an_unknown_confluent_schema_id_is_unknown_not_corrupt() -> None:
    settings_ = Settings(_env_file=None, schema_registry_url="mock://ridestream-unknown-id")  # type: ignore[call-arg]
    serde = make_serde(RIDE_STARTED, settings_)
    data = serde.encode(ride(), "rides.started")
    forged = data[:1] + (999).to_bytes(4, "big") + data[5:]
    with pytest.raises(UnknownSchemaError, match="schema id 999"):
        serde.decode(forged, "rides.started")
