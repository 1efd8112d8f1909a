"""The root of the project's exceptions. Each package keeps its own leaves in its own
``exceptions.py`` (``contracts``, ``serde``, ``kafka``, ``ml``, ``store``), one-liners that keep the
underlying cause; none shadows a library's name (confluent-kafka's ``KafkaError``, pydantic's
``ValidationError``)."""

from __future__ import annotations


class RidestreamError(Exception):
    """Root of every error ridestream raises on purpose."""

    exit_code = 1  # what a command exits with on it


class ConfigurationError(RidestreamError):
    """A setting is missing, malformed or points at something unusable."""
