"""The columnar encoder must write exactly the bytes fastavro writes, record for record; the
columnar decoder must read exactly what fastavro reads, or leave the record to it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ridestream.contracts.exceptions import InvalidEventError, SchemaError
from ridestream.contracts.ids import random_uuids
from ridestream.contracts.schemas import DECISION, PREDICTION, RIDE_COMPLETED, RIDE_STARTED
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.serde.columnar_decode import ColumnarDecoder
from ridestream.serde.columnar_encode import ColumnarEncoder, zigzag_varints
from ridestream.serde.exceptions import DecodeError
from tests.strategies import from_avro

FLAT_RECORDS = [RIDE_STARTED, RIDE_COMPLETED, PREDICTION]


def as_columns(records: list[dict[str, Any]], names: list[str]) -> dict[str, list[Any]]:
    return {name: [record[name] for record in records] for name in names}


@pytest.mark.parametrize("name", [*FLAT_RECORDS, DECISION])  # a decision's arrays value by value
def test_columnar_bytes_equal_fastavro_bytes(name: str) -> None:
    serde = SingleObjectSerde(name)
    encoder = ColumnarEncoder(serde.schema, serde.header)
    names = [f["name"] for f in serde.schema.raw["fields"]]

    @settings(max_examples=60, deadline=None)
    @given(st.lists(from_avro(serde.schema.raw), min_size=1, max_size=30))
    def same_bytes(records: list[dict[str, Any]]) -> None:
        encoded = encoder.encode(as_columns(records, names), len(records))
        assert encoded == [serde.encode(record) for record in records]

    same_bytes()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=50))
def test_zigzag_varints_match_the_avro_specification(values: list[int]) -> None:
    lengths, matrix = zigzag_varints(np.array(values, dtype=np.int64))
    for value, length, row in zip(values, lengths, matrix, strict=True):
        zigzag = (value << 1) ^ (value >> 63)
        expected = bytearray()
        while True:
            byte, zigzag = zigzag & 0x7F, zigzag >> 7
            expected.append(byte | (0x80 if zigzag else 0))
            if not zigzag:
                break
        assert bytes(row[:length]) == bytes(expected)


def test_pandas_columns_with_missing_values_encode_like_none() -> None:
    serde = SingleObjectSerde(RIDE_STARTED)
    encoder = ColumnarEncoder(serde.schema, serde.header)
    frame = pd.DataFrame(
        {
            "event_id": random_uuids(3),
            "ride_id": ["a", "b", "c"],
            "event_time": pd.to_datetime(["2026-01-01T00:00:00.123Z"] * 3, utc=True),
            "source": ["backend", "gateway", "backend"],
            "enhanced": [False, True, False],
            "pickup_time": pd.to_datetime(
                ["2023-02-01 08:00:00", "2023-02-01 09:30:15", "2023-02-02 00:00:00"]
            ),
            "pickup_zone": pd.array([1, 2, 3], dtype="int32"),
            "dropoff_zone": pd.array([4, 5, 6], dtype="int32"),
            "trip_distance": [1.5, 0.0, 12.25],
            "passenger_count": pd.array([1, None, 3], dtype="Int32"),
            "vendor_id": pd.array([None, None, None], dtype="Int32"),
            "rate_code": pd.array([1, 1, None], dtype="Int32"),
            "payment_type": pd.array([1, 2, None], dtype="Int32"),
            "trip_type": pd.array([1, None, 2], dtype="Int32"),
        }
    )
    encoded = encoder.encode({c: frame[c] for c in frame.columns}, 3)
    decoded = [serde.decode(data) for data in encoded]
    assert [d["passenger_count"] for d in decoded] == [1, None, 3]
    assert [d["pickup_time"].isoformat() for d in decoded] == [
        "2023-02-01T08:00:00",
        "2023-02-01T09:30:15",
        "2023-02-02T00:00:00",
    ]
    assert decoded[0]["event_time"].isoformat() == "2026-01-01T00:00:00.123000+00:00"
    assert [str(d["event_id"]) for d in decoded] == list(frame["event_id"])


def test_bad_columns_are_named() -> None:
    serde = SingleObjectSerde(PREDICTION)
    encoder = ColumnarEncoder(serde.schema, serde.header)
    names = [f["name"] for f in serde.schema.raw["fields"]]
    record = {
        "ride_id": "r",
        "target": "cost",
        "value": 12.5,
        "model_name": "ride-cost",
        "model_version": "3",
        "role": "champion",
        "source_event_id": uuid.uuid4(),
        "source_event_time": datetime.now(UTC),
        "pickup_time": datetime(2023, 2, 1),
        "predicted_at": datetime.now(UTC),
    }
    columns = as_columns([record], names)
    with pytest.raises(InvalidEventError, match="target: 'speed' is not one of"):
        encoder.encode({**columns, "target": ["speed"]}, 1)
    with pytest.raises(InvalidEventError, match="value: a value is required"):
        encoder.encode({**columns, "value": [None]}, 1)
    without = dict(columns)
    del without["ride_id"]
    with pytest.raises(InvalidEventError, match="ride_id: missing column"):
        encoder.encode(without, 1)


def test_nested_records_are_not_decoded_column_by_column() -> None:
    serde = SingleObjectSerde(DECISION)
    with pytest.raises(SchemaError, match="not columnar"):
        ColumnarDecoder(serde.schema, serde.header)


def test_values_written_whole_are_encoded_once_each() -> None:
    serde = SingleObjectSerde(DECISION)
    encoder = ColumnarEncoder(serde.schema, serde.header)
    record = {
        "ride_id": "r",
        "quote": None,
        "duration_minutes": 12.5,
        "eta": None,
        "expected_tip": None,
        "actions": ("driver_incentive",),
        "models": ({"target": "duration", "model_name": "ride-duration", "model_version": "3"},),
        "partial": True,
        "decided_at": datetime(2023, 2, 1, tzinfo=UTC),
    }
    rows = [record, {**record, "actions": ()}, record]
    encoded = encoder.encode(as_columns(rows, list(record)), 3)
    assert encoded == [serde.encode(row) for row in rows]
    actions = next(f for f in encoder.fields if f.name == "actions")
    assert len(actions.encoded) == 2  # one per distinct value, tuples remembered by themselves


def test_random_uuids_are_version_4_and_distinct() -> None:
    ids = random_uuids(1000)
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)


# -- decoding ----------------------------------------------------------------------------------
EPOCH = datetime(1970, 1, 1)


def plain(value: Any) -> Any:
    """One decoded value in a form both decoders' outputs compare equal in."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):  # pandas Timestamps too
        moment = value.to_pydatetime() if isinstance(value, pd.Timestamp) else value
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        return ("time", (moment - EPOCH) // timedelta(milliseconds=1))
    if isinstance(value, float) and np.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def fast_rows(columns: dict[str, Any], names: list[str]) -> list[dict[str, Any]]:
    values = {name: pd.Series(columns[name]).tolist() for name in names}
    count = len(values[names[0]])
    return [{name: plain(values[name][i]) for name in names} for i in range(count)]


@pytest.mark.parametrize("name", FLAT_RECORDS)
def test_columnar_decoder_reads_what_fastavro_reads(name: str) -> None:
    serde = SingleObjectSerde(name)
    decoder = ColumnarDecoder(serde.schema, serde.header)
    names = [f["name"] for f in serde.schema.raw["fields"]]

    @settings(max_examples=60, deadline=None)
    @given(st.lists(from_avro(serde.schema.raw), min_size=0, max_size=30))
    def same_values(records: list[dict[str, Any]]) -> None:
        columns, ok = decoder.decode([serde.encode(record) for record in records])
        assert ok.all()
        expected = [{k: plain(v) for k, v in record.items()} for record in records]
        assert fast_rows(columns, names) == expected

    same_values()


def _damaged(data: bytes, how: int, where: int) -> bytes:
    at = where % len(data)
    if how == 0:
        return data[:at]  # truncated
    if how == 1:
        return data + bytes([where % 256])  # a trailing byte
    if how == 2:
        return data[:at] + bytes([data[at] ^ (1 << (where % 8))]) + data[at + 1 :]  # a flipped bit
    return data[:at] + bytes([where % 256]) + data[at:]  # an inserted byte


@pytest.mark.parametrize("name", [RIDE_STARTED, PREDICTION])
def test_columnar_decoder_leaves_what_it_cannot_prove_to_fastavro(name: str) -> None:
    serde = SingleObjectSerde(name)
    decoder = ColumnarDecoder(serde.schema, serde.header)
    names = [f["name"] for f in serde.schema.raw["fields"]]

    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(
            st.tuples(from_avro(serde.schema.raw), st.integers(0, 4), st.integers(0, 10_000)),
            min_size=1,
            max_size=20,
        )
    )
    def fast_or_deferred(cases: list[tuple[dict[str, Any], int, int]]) -> None:
        payloads = [
            serde.encode(record) if how == 4 else _damaged(serde.encode(record), how, where)
            for record, how, where in cases
        ]
        columns, ok = decoder.decode(payloads)
        fast = iter(fast_rows(columns, names))
        for payload, decoded_here in zip(payloads, ok.tolist(), strict=True):
            try:
                expected = {k: plain(v) for k, v in serde.decode(payload).items()}
            except DecodeError:
                assert not decoded_here  # whatever fastavro refuses, the fast path refuses too
                continue
            if decoded_here:
                assert next(fast) == expected

    fast_or_deferred()


def test_columnar_decoder_defers_other_writers_and_uuid_forms() -> None:
    serde = SingleObjectSerde(PREDICTION)
    decoder = ColumnarDecoder(serde.schema, serde.header)
    record = {
        "ride_id": "r", "target": "cost", "value": 12.5, "model_name": "ride-cost",
        "model_version": "3", "role": "champion", "source_event_id": "6F9619FF-8B86-D011-B42D-00C04FC964FF",
        "source_event_time": datetime.now(UTC), "pickup_time": datetime(2023, 2, 1), "predicted_at": datetime.now(UTC),
    }  # fmt: skip
    upper = serde.encode(record)
    canonical = serde.encode({**record, "source_event_id": uuid.uuid4()})
    other_writer = b"\xc3\x01" + b"\x01" * 8 + canonical[10:]
    columns, ok = decoder.decode([upper, canonical, other_writer, b""])
    assert ok.tolist() == [False, True, False, False]
    assert columns["ride_id"] == ["r"]
