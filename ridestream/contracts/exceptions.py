"""What breaks a contract."""

from __future__ import annotations

from ridestream.exceptions import RidestreamError


class SchemaError(RidestreamError):
    """An Avro contract in schemas/ is malformed or incompatible with its predecessor."""


class InvalidEventError(RidestreamError):
    """An event's values break its contract; ``field`` names the first offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
