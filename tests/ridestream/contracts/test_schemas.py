from __future__ import annotations

import ctypes
import json
from pathlib import Path

import pytest

from ridestream.contracts.exceptions import SchemaError
from ridestream.contracts.schemas import (
    DECISION,
    PREDICTION,
    RIDE_COMPLETED,
    RIDE_STARTED,
    SchemaStore,
    crc64_avro_fingerprint,
    load_store,
)


def test_the_project_store_holds_every_contract() -> None:
    store = load_store()
    assert store.names() == sorted([DECISION, PREDICTION, RIDE_COMPLETED, RIDE_STARTED])
    for name in store.names():
        latest = store.latest(name)
        assert latest.full_name == f"io.ridestream.rides.{name}"
        assert store.by_fingerprint(latest.fingerprint) is latest


@pytest.mark.parametrize(
    ("schema", "expected"),
    # Test vectors of the Avro specification's reference implementation (schema-tests.txt).
    [('"null"', 7195948357588979594), ('"int"', 8247732601305521295)],
)
def test_crc64_avro_fingerprint_matches_the_reference(schema: str, expected: int) -> None:
    fingerprint = crc64_avro_fingerprint(json.loads(schema))
    assert ctypes.c_int64(int.from_bytes(fingerprint, "little")).value == expected


def write(directory: Path, name: str, schema: dict[str, object]) -> None:
    (directory / name).write_text(json.dumps(schema))


RECORD = {"type": "record", "name": "Thing", "fields": [{"name": "a", "type": "int"}]}


def test_files_must_follow_the_naming_scheme(tmp_path: Path) -> None:
    write(tmp_path, "thing.avsc", RECORD)
    with pytest.raises(SchemaError, match=r"<record>\.v<N>\.avsc"):
        SchemaStore(tmp_path)


def test_versions_must_not_have_gaps(tmp_path: Path) -> None:
    write(tmp_path, "thing.v1.avsc", RECORD)
    write(
        tmp_path,
        "thing.v3.avsc",
        {
            **RECORD,
            "doc": "x",
            "fields": [*RECORD["fields"], {"name": "b", "type": "int", "default": 0}],
        },
    )  # type: ignore[list-item]
    with pytest.raises(SchemaError, match="without gaps"):
        SchemaStore(tmp_path)


def test_an_unparseable_schema_is_named(tmp_path: Path) -> None:
    write(
        tmp_path,
        "thing.v1.avsc",
        {"type": "record", "name": "Thing", "fields": [{"name": "a", "type": "nope"}]},
    )
    with pytest.raises(SchemaError, match=r"thing\.v1\.avsc"):
        SchemaStore(tmp_path)


def test_a_version_identical_to_another_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "thing.v1.avsc", RECORD)
    write(tmp_path, "thing.v2.avsc", RECORD)
    with pytest.raises(SchemaError, match="identical"):
        SchemaStore(tmp_path)
