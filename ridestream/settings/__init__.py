"""One typed settings object, read from the environment (prefix ``RIDESTREAM_``) in one place.

Nested groups use ``__``: ``RIDESTREAM_TOPICS__PREFIX=tenant-a.``,
``RIDESTREAM_LOCAL_KAFKA__PORT=19092``. librdkafka options pass through unchanged, under their own
names, as a JSON object: ``RIDESTREAM_KAFKA_CONFIG='{"security.protocol": "SASL_SSL",
"sasl.mechanism": "PLAIN", "sasl.username": "...", "sasl.password": "..."}'``, or from a file
of ``key=value`` lines (Kafka's ``client.properties``), ``RIDESTREAM_KAFKA_CONFIG_FILE``: the way
to hand a service its credentials without putting them in its environment.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ridestream.settings.sections import (
    DecisionSettings,
    DriftSettings,
    EvaluationSettings,
    GatewaySettings,
    KafkaConfigValue,
    KestraSettings,
    LocalKafkaSettings,
    MlflowSettings,
    ModelSettings,
    PolicySettings,
    PredictorSettings,
    TopicSettings,
)

__all__ = [
    "DecisionSettings",
    "DriftSettings",
    "EvaluationSettings",
    "GatewaySettings",
    "KafkaConfigValue",
    "KestraSettings",
    "LocalKafkaSettings",
    "MlflowSettings",
    "ModelSettings",
    "PolicySettings",
    "PredictorSettings",
    "Settings",
    "TopicSettings",
    "get_settings",
    "read_properties",
    "redact",
    "redact_url",
]


# Option names whose values must never reach a log line or an error message.
_SECRET_MARKERS = (
    "password",
    "secret",
    "token",
    "key.pem",
    "sasl.jaas.config",
    "sasl.oauthbearer.config",
    "basic.auth.user.info",
)


def redact(config: dict[str, KafkaConfigValue]) -> dict[str, KafkaConfigValue]:
    """Return a copy of a client config that is safe to log: secret-looking values masked."""
    return {
        key: "***" if any(marker in key.lower() for marker in _SECRET_MARKERS) else value
        for key, value in config.items()
    }


def read_properties(path: Path) -> dict[str, KafkaConfigValue]:
    """``key=value`` lines (``#`` and ``!`` start comments), as Java's and librdkafka's property
    files hold client options."""
    options: dict[str, KafkaConfigValue] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            # The line may hold a secret: say where it is, never what it says.
            raise ValueError(f"{path}:{number}: expected key=value")
        options[key.strip()] = value.strip()
    return options


def redact_url(url: str | None) -> str | None:
    """A URL without the credentials it may carry (``scheme://user:pw@host`` → ``scheme://***@host``)."""
    if url is None or "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


class Settings(BaseSettings):
    """Everything configurable in ridestream; build it once and hand it to the clients."""

    model_config = SettingsConfigDict(
        env_prefix="RIDESTREAM_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        use_attribute_docstrings=True,
    )

    kafka_bootstrap: str | None = Field(
        default=None,
        description="bootstrap.servers of an existing cluster; unset = the local broker.",
    )
    kafka_config: dict[str, KafkaConfigValue] = Field(
        default_factory=dict,
        description="librdkafka options for every client (security.protocol, sasl.*, ssl.*).",
    )
    kafka_config_file: Path | None = None
    """A file of librdkafka options (key=value lines) for every client; kafka_config wins."""
    producer_config: dict[str, KafkaConfigValue] = Field(default_factory=dict)
    """librdkafka options for producers only (JSON)."""
    consumer_config: dict[str, KafkaConfigValue] = Field(default_factory=dict)
    """librdkafka options for consumers only (JSON)."""
    delivery_timeout_ms: int = Field(
        default=30_000,
        ge=1,
        description="How long a produced message may wait for its acknowledgement (message.timeout.ms).",
    )
    queue_full_retries: int = Field(default=20, ge=0)
    """Waits of 0.5 s on a full local producer queue before QueueFullError."""
    topics: TopicSettings = Field(default_factory=TopicSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    predictor: PredictorSettings = Field(default_factory=PredictorSettings)
    decisions: DecisionSettings = Field(default_factory=DecisionSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    kestra: KestraSettings = Field(default_factory=KestraSettings)
    local_kafka: LocalKafkaSettings = Field(default_factory=LocalKafkaSettings)
    schema_registry_url: str | None = Field(
        default=None,
        description="Confluent-compatible Schema Registry; set = Confluent wire framing.",
    )
    schema_registry_config: dict[str, KafkaConfigValue] = Field(default_factory=dict)
    """Schema Registry client options (basic.auth.user.info, ...)."""
    schemas_dir: Path | None = Field(default=None, description="Where the .avsc files live.")
    log_level: str = "INFO"
    """Log level of every command."""

    @field_validator("kafka_config", "producer_config", "consumer_config")
    @classmethod
    def _no_bootstrap_inside(
        cls, value: dict[str, KafkaConfigValue]
    ) -> dict[str, KafkaConfigValue]:
        if "bootstrap.servers" in value:
            raise ValueError("set bootstrap.servers through RIDESTREAM_KAFKA_BOOTSTRAP")
        return value

    @field_validator("kafka_config_file")
    @classmethod
    def _readable_options(cls, value: Path | None) -> Path | None:
        if value is None:
            return value
        try:
            options = read_properties(value)
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror}") from exc
        if "bootstrap.servers" in options:
            raise ValueError("set bootstrap.servers through RIDESTREAM_KAFKA_BOOTSTRAP")
        return value

    @property
    def client_options(self) -> dict[str, KafkaConfigValue]:
        """The librdkafka options every client gets: the file's, then kafka_config's."""
        from_file = read_properties(self.kafka_config_file) if self.kafka_config_file else {}
        return {**from_file, **self.kafka_config}

    @property
    def bootstrap_servers(self) -> str:
        """The cluster to talk to: the configured one, else the local nodes' listeners."""
        return self.kafka_bootstrap or self.local_kafka.bootstrap()

    @property
    def uses_local_kafka(self) -> bool:
        """True when no external cluster is configured."""
        return self.kafka_bootstrap is None


@cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
