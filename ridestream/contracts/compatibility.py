"""Avro schema-resolution compatibility, checked statically and on generated data.

``reader_problems(reader, writer)`` lists why data written with ``writer`` could not be read with
``reader`` under the Avro specification's resolution rules (the same judgement as Java's
``SchemaCompatibility``). A change is *backward* compatible when the new schema reads old data,
*forward* compatible when the old schema reads new data; ``ridestream schemas check`` demands both
for every pair of consecutive versions. Logical types must not change either: a timestamp read back
as a local timestamp decodes without error and still means something else.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.utils import generate_many

from ridestream.contracts.schemas import SchemaStore, SchemaVersion

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
NAMED = {"record", "enum", "fixed"}
# writer type -> reader types that may read it (Avro spec, "Schema Resolution").
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def _full_name(schema: dict[str, Any], namespace: str | None) -> str:
    name: str = schema["name"]
    if "." in name:
        return name
    ns = schema.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def _collect_names(schema: Any, namespace: str | None, names: dict[str, Any]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect_names(branch, namespace, names)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind in NAMED:
            full = _full_name(schema, namespace)
            names[full] = schema
            names.setdefault(full.rsplit(".", 1)[-1], schema)
            namespace = full.rsplit(".", 1)[0] if "." in full else None
            for field in schema.get("fields", []):
                _collect_names(field["type"], namespace, names)
        elif kind == "array":
            _collect_names(schema["items"], namespace, names)
        elif kind == "map":
            _collect_names(schema["values"], namespace, names)
        elif isinstance(kind, (dict, list)):
            _collect_names(kind, namespace, names)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


class _Checker:
    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader_names: dict[str, Any] = {}
        self.writer_names: dict[str, Any] = {}
        _collect_names(reader, None, self.reader_names)
        _collect_names(writer, None, self.writer_names)
        self._in_progress: set[tuple[int, int]] = set()

    @staticmethod
    def _resolve(schema: Any, names: dict[str, Any]) -> Any:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return names.get(schema, schema)
        if isinstance(schema, dict) and isinstance(schema["type"], (dict, list)):
            return schema["type"]
        if (
            isinstance(schema, dict)
            and isinstance(schema["type"], str)
            and schema["type"] not in (PRIMITIVES | NAMED | {"array", "map"})
        ):
            return names.get(schema["type"], schema)
        return schema

    @staticmethod
    def _kind(schema: Any) -> str:
        if isinstance(schema, list):
            return "union"
        if isinstance(schema, str):
            return schema
        kind: str = schema["type"]
        return kind

    @staticmethod
    def _logical(schema: Any) -> str | None:
        return schema.get("logicalType") if isinstance(schema, dict) else None

    def problems(self, reader: Any, writer: Any, path: str) -> list[str]:
        reader = self._resolve(reader, self.reader_names)
        writer = self._resolve(writer, self.writer_names)
        r_kind, w_kind = self._kind(reader), self._kind(writer)

        if w_kind == "union":
            found: list[str] = []
            for i, branch in enumerate(writer):
                found += self.problems(reader, branch, f"{path}<union branch {i}>")
            return found
        if r_kind == "union":
            if any(not self.problems(branch, writer, path) for branch in reader):
                return []
            return [f"{path}: no branch of the reader's union reads the writer's {w_kind}"]

        if self._logical(reader) != self._logical(writer):
            return [
                f"{path}: logical type changed from {self._logical(writer)} "
                f"to {self._logical(reader)}"
            ]
        if r_kind != w_kind:
            if r_kind in PROMOTIONS.get(w_kind, set()):
                return []
            return [f"{path}: writer's {w_kind} cannot be read as {r_kind}"]
        if r_kind in PRIMITIVES:
            return []

        key = (id(reader), id(writer))
        if key in self._in_progress:  # recursive type already under check
            return []
        self._in_progress.add(key)
        try:
            return self._complex(reader, writer, r_kind, path)
        finally:
            self._in_progress.discard(key)

    @staticmethod
    def _names_match(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
        reader_names = {_short(reader["name"])} | {_short(a) for a in reader.get("aliases", [])}
        return _short(writer["name"]) in reader_names

    def _complex(self, reader: Any, writer: Any, kind: str, path: str) -> list[str]:
        if kind == "array":
            return self.problems(reader["items"], writer["items"], f"{path}[]")
        if kind == "map":
            return self.problems(reader["values"], writer["values"], f"{path}{{}}")
        if not self._names_match(reader, writer):
            return [f"{path}: {kind} {writer['name']} cannot be read as {reader['name']}"]
        if kind == "fixed":
            if reader["size"] != writer["size"]:
                return [f"{path}: fixed size {writer['size']} cannot be read as {reader['size']}"]
            return []
        if kind == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                return [f"{path}: reader's enum lacks symbols {missing} and has no default"]
            return []
        found: list[str] = []
        writer_fields = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", [])]
            match = next((writer_fields[n] for n in names if n in writer_fields), None)
            field_path = f"{path}.{field['name']}" if path else field["name"]
            if match is None:
                if "default" not in field:
                    found.append(f"{field_path}: new field without a default")
            else:
                found += self.problems(field["type"], match["type"], field_path)
        return found


def reader_problems(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader``; empty when it can."""
    return _Checker(reader, writer).problems(reader, writer, "")


def roundtrip_problems(
    reader: SchemaVersion, writer: SchemaVersion, samples: int = 200
) -> list[str]:
    """Write generated records with ``writer``, read them with ``reader``; report what fails."""
    for record in generate_many(writer.parsed, samples):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, writer.parsed, record)
        buffer.seek(0)
        try:
            fastavro.schemaless_reader(buffer, writer.parsed, reader.parsed)
        except Exception as exc:  # any failure to resolve is the finding itself
            return [
                f"v{reader.version} could not read a record written with v{writer.version}: {exc}"
            ]
    return []


@dataclass(frozen=True)
class PairReport:
    """The verdict on one step of a record's history (``older`` → ``newer``)."""

    name: str
    older: int
    newer: int
    backward: list[str]
    forward: list[str]

    @property
    def ok(self) -> bool:
        """True when both directions resolve."""
        return not self.backward and not self.forward


def check_pair(older: SchemaVersion, newer: SchemaVersion) -> PairReport:
    """Backward (new reads old) and forward (old reads new) compatibility of two versions."""
    backward = reader_problems(newer.raw, older.raw)
    forward = reader_problems(older.raw, newer.raw)
    # Statically fine should mean fastavro agrees on real bytes; check it rather than trust it.
    if not backward:
        backward = roundtrip_problems(newer, older)
    if not forward:
        forward = roundtrip_problems(older, newer)
    return PairReport(older.name, older.version, newer.version, backward, forward)


def check_store(store: SchemaStore) -> list[PairReport]:
    """Check every consecutive pair of versions of every record in a store."""
    reports = []
    for name in store.names():
        versions = store.versions(name)
        reports += [check_pair(a, b) for a, b in itertools.pairwise(versions)]
    return reports
