from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ridestream.cli.app import app
from ridestream.contracts.compatibility import check_store, reader_problems
from ridestream.contracts.schemas import RIDE_STARTED, SchemaStore, default_schemas_dir

V1: dict[str, Any] = {
    "type": "record",
    "name": "Ride",
    "namespace": "t",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "zone", "type": "int"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["a", "b"]}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def changed(**edits: Any) -> dict[str, Any]:
    schema = copy.deepcopy(V1)
    if "add" in edits:
        schema["fields"].append(edits["add"])
    if "drop" in edits:
        schema["fields"] = [f for f in schema["fields"] if f["name"] != edits["drop"]]
    if "retype" in edits:
        name, new_type = edits["retype"]
        next(f for f in schema["fields"] if f["name"] == name)["type"] = new_type
    return schema


def test_an_identical_schema_reads_itself() -> None:
    assert reader_problems(V1, V1) == []


def test_a_new_optional_field_is_compatible_both_ways() -> None:
    v2 = changed(add={"name": "note", "type": ["null", "string"], "default": None})
    assert reader_problems(v2, V1) == []  # backward: new reads old
    assert reader_problems(V1, v2) == []  # forward: old reads new


def test_a_new_field_without_default_breaks_backward() -> None:
    v2 = changed(add={"name": "note", "type": "string"})
    assert reader_problems(v2, V1) == ["note: new field without a default"]
    assert reader_problems(V1, v2) == []


def test_dropping_a_field_without_default_breaks_forward() -> None:
    v2 = changed(drop="zone")
    assert reader_problems(v2, V1) == []
    assert reader_problems(V1, v2) == ["zone: new field without a default"]


def test_type_promotion_is_one_way() -> None:
    v2 = changed(retype=("zone", "long"))
    assert reader_problems(v2, V1) == []
    assert reader_problems(V1, v2) == ["zone: writer's long cannot be read as int"]


def test_a_new_enum_symbol_breaks_forward_unless_the_reader_has_a_default() -> None:
    v2 = changed(retype=("kind", {"type": "enum", "name": "Kind", "symbols": ["a", "b", "c"]}))
    assert reader_problems(v2, V1) == []
    assert "lacks symbols ['c']" in reader_problems(V1, v2)[0]
    v1_with_default = changed(
        retype=("kind", {"type": "enum", "name": "Kind", "symbols": ["a", "b"], "default": "a"})
    )
    assert reader_problems(v1_with_default, v2) == []


def test_a_changed_logical_type_is_flagged_though_the_bytes_would_decode() -> None:
    v2 = changed(retype=("at", {"type": "long", "logicalType": "local-timestamp-millis"}))
    assert "logical type changed" in reader_problems(v2, V1)[0]


def test_unions_resolve_branch_by_branch() -> None:
    v2 = changed(retype=("zone", ["null", "int"]))
    assert reader_problems(v2, V1) == []  # int is a branch of the new union
    assert "union branch 0" in reader_problems(V1, v2)[0]  # old int reader cannot take null


def make_store(tmp_path: Path, *versions: dict[str, Any]) -> SchemaStore:
    for number, schema in enumerate(versions, start=1):
        (tmp_path / f"ride.v{number}.avsc").write_text(json.dumps(schema))
    return SchemaStore(tmp_path)


def test_check_store_reports_each_step(tmp_path: Path) -> None:
    ok = changed(add={"name": "note", "type": ["null", "string"], "default": None})
    bad = copy.deepcopy(ok)
    bad["fields"].append({"name": "must", "type": "string"})
    reports = check_store(make_store(tmp_path, V1, ok, bad))
    assert [(r.older, r.newer, r.ok) for r in reports] == [(1, 2, True), (2, 3, False)]
    assert reports[1].backward == ["must: new field without a default"]


def test_schemas_check_passes_on_the_project_and_fails_on_a_breaking_version(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["schemas", "check"])
    assert result.exit_code == 0, result.output
    assert "RideStarted v1" in result.output

    shutil.copytree(default_schemas_dir(), tmp_path, dirs_exist_ok=True)
    v1 = json.loads((tmp_path / "ride_started.v1.avsc").read_text())
    v1["fields"].append({"name": "surge", "type": "double"})  # no default: old data unreadable
    (tmp_path / "ride_started.v2.avsc").write_text(json.dumps(v1))
    from ridestream.settings import get_settings

    get_settings.cache_clear()
    result = runner.invoke(app, ["schemas", "check"], env={"RIDESTREAM_SCHEMAS_DIR": str(tmp_path)})
    get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert f"{RIDE_STARTED} v1 -> v2: INCOMPATIBLE" in result.output
    assert "surge: new field without a default" in result.output


@pytest.mark.parametrize("name", ["ride_started", "ride_completed", "prediction", "decision"])
def test_project_schemas_survive_a_roundtrip_check_against_themselves(name: str) -> None:
    from ridestream.contracts.compatibility import roundtrip_problems
    from ridestream.contracts.schemas import load_store

    store = load_store()
    schema = next(s for s in store if s.path.name.startswith(name + "."))
    assert roundtrip_problems(schema, schema) == []
