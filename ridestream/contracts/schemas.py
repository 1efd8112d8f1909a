"""The Avro contracts: every version in ``schemas/``, found by name or by fingerprint.

Files are named ``<record>.v<N>.avsc`` (``ride_started.v1.avsc``); every version ever published
stays, so a reader can resolve any writer it meets. Each file is self-contained (no references to
types in other files) because a single-object fingerprint covers exactly one schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from ridestream.contracts.exceptions import SchemaError

_FILE_NAME = re.compile(r"^(?P<stem>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")

RIDE_STARTED = "RideStarted"
RIDE_COMPLETED = "RideCompleted"
PREDICTION = "Prediction"
DECISION = "Decision"


@dataclass(frozen=True)
class SchemaVersion:
    """One parsed version of one record type."""

    name: str
    version: int
    path: Path
    raw: dict[str, Any] = field(repr=False)
    parsed: dict[str, Any] = field(repr=False)
    fingerprint: bytes = field(repr=False)

    @property
    def full_name(self) -> str:
        """The record's full Avro name, namespace included."""
        namespace = self.raw.get("namespace")
        return f"{namespace}.{self.name}" if namespace else self.name


def crc64_avro_fingerprint(schema: dict[str, Any]) -> bytes:
    """The CRC-64-AVRO fingerprint of a schema's Parsing Canonical Form, little-endian, 8 bytes.

    This is exactly what the single-object encoding puts after its two marker bytes.
    """
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def default_schemas_dir() -> Path:
    """``schemas/`` of the repository, or the copy packaged inside an installed wheel."""
    package = Path(__file__).resolve().parents[1]  # ridestream/
    for candidate in (package.parent / "schemas", package / "_schemas"):
        if candidate.is_dir():
            return candidate
    raise SchemaError(f"no schemas directory next to {package}; set RIDESTREAM_SCHEMAS_DIR")


class SchemaStore:
    """Every schema version of a directory, parsed once, looked up by name or fingerprint."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._by_name: dict[str, list[SchemaVersion]] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        for path in sorted(directory.glob("*.avsc")):
            self._add(self._load(path))
        if not self._by_name:
            raise SchemaError(f"no *.avsc files in {directory}")
        for name, versions in self._by_name.items():
            versions.sort(key=lambda v: v.version)
            numbers = [v.version for v in versions]
            if numbers != list(range(1, len(numbers) + 1)):
                raise SchemaError(f"{name}: versions must run 1..N without gaps, found {numbers}")

    @staticmethod
    def _load(path: Path) -> SchemaVersion:
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise SchemaError(f"{path.name}: schema files are named <record>.v<N>.avsc")
        try:
            raw = json.loads(path.read_text())
            # Each file gets its own namespace of named types: versions redefine the same names.
            parsed = cast(dict[str, Any], fastavro.parse_schema(raw, named_schemas={}))
        except (ValueError, fastavro.schema.SchemaParseException) as exc:
            raise SchemaError(f"{path.name}: {exc}") from exc
        if raw.get("type") != "record":
            raise SchemaError(f"{path.name}: the top level must be a record")
        return SchemaVersion(
            name=raw["name"].rsplit(".", 1)[-1],
            version=int(match["version"]),
            path=path,
            raw=raw,
            parsed=parsed,
            fingerprint=crc64_avro_fingerprint(raw),
        )

    def _add(self, schema: SchemaVersion) -> None:
        clash = self._by_fingerprint.get(schema.fingerprint)
        if clash is not None:
            raise SchemaError(f"{schema.path.name} is identical to {clash.path.name}")
        self._by_fingerprint[schema.fingerprint] = schema
        self._by_name.setdefault(schema.name, []).append(schema)

    def names(self) -> list[str]:
        """Record names, sorted."""
        return sorted(self._by_name)

    def versions(self, name: str) -> list[SchemaVersion]:
        """Every version of a record type, oldest first."""
        try:
            return list(self._by_name[name])
        except KeyError:
            raise SchemaError(f"no schema named {name!r} in {self.directory}") from None

    def latest(self, name: str) -> SchemaVersion:
        """The newest version of a record type."""
        return self.versions(name)[-1]

    def get(self, name: str, version: int) -> SchemaVersion:
        """One given version of a record type."""
        for schema in self.versions(name):
            if schema.version == version:
                return schema
        raise SchemaError(f"{name} has no version {version}")

    def by_fingerprint(self, fingerprint_: bytes) -> SchemaVersion | None:
        """The version whose CRC-64-AVRO fingerprint this is, if any."""
        return self._by_fingerprint.get(fingerprint_)

    def __iter__(self) -> Iterator[SchemaVersion]:
        for name in self.names():
            yield from self._by_name[name]


@cache
def load_store(directory: Path | None = None) -> SchemaStore:
    """The schema store of a directory (default: the project's), loaded once per process."""
    return SchemaStore(directory or default_schemas_dir())
