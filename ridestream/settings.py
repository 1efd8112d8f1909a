"""One typed settings object, read from the environment (prefix ``RIDESTREAM_``) in one place.

Nested groups use ``__``: ``RIDESTREAM_TOPICS__PREFIX=tenant-a.``,
``RIDESTREAM_LOCAL_KAFKA__PORT=19092``. librdkafka options pass through unchanged, under their own
names, as a JSON object: ``RIDESTREAM_KAFKA_CONFIG='{"security.protocol": "SASL_SSL",
"sasl.mechanism": "PLAIN", "sasl.username": "...", "sasl.password": "..."}'``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KafkaConfigValue = str | int | float | bool

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


def redact_url(url: str | None) -> str | None:
    """A URL without the credentials it may carry (``scheme://user:pw@host`` → ``scheme://***@host``)."""
    if url is None or "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def _xdg(var: str, fallback: str) -> Path:
    import os

    return Path(os.environ.get(var) or Path.home() / fallback) / "ridestream"


class TopicSettings(BaseModel):
    """Topic names (with a common prefix for multi-tenant clusters) and how to create them."""

    prefix: str = ""
    started: str = "rides.started"
    completed: str = "rides.completed"
    predictions: str = "rides.predictions"
    decisions: str = "rides.decisions"
    dlq: str = "rides.dlq"
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)

    def names(self) -> dict[str, str]:
        """Role → full topic name, prefix applied."""
        roles = ("started", "completed", "predictions", "decisions", "dlq")
        return {role: self.prefix + getattr(self, role) for role in roles}

    def full(self, role: str) -> str:
        """The full name of one topic role (``started``, ``completed``, ...)."""
        return self.names()[role]


class LocalKafkaSettings(BaseModel):
    """The single-node KRaft broker that ``ridestream kafka start`` runs from Maven Central jars."""

    version: str = "4.2.1"
    host: Literal["127.0.0.1"] = "127.0.0.1"
    port: int = Field(default=9092, ge=1, le=65535)
    controller_port: int = Field(default=9093, ge=1, le=65535)
    home: Path = Field(default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state") / "kafka")
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache") / "kafka")
    heap: str = "768m"
    start_timeout_s: float = Field(default=90.0, gt=0)
    stop_timeout_s: float = Field(default=30.0, gt=0)


class PredictorSettings(BaseModel):
    """The per-target predictor loop."""

    batch_max_messages: int = Field(default=1000, ge=1)
    batch_max_wait_s: float = Field(
        default=0.1, gt=0, le=1.0, description="At most 1 s: signals are served between polls."
    )
    batch_linger_s: float = Field(
        default=0.1,
        ge=0,
        le=1.0,
        description="A batch that is not full gathers until this long after the previous one "
        "began: fewer transactions at moderate rates, for that much latency (0 = no linger).",
    )
    transaction_max_batches: int = Field(
        default=4,
        ge=1,
        description="Batches one transaction may take, of what has already arrived, while the "
        "previous one commits or under a backlog (fewer, larger transactions; 1 = one batch "
        "a transaction).",
    )
    metrics_port: int = Field(default=0, ge=0, le=65535, description="0 = no /metrics server.")
    metrics_host: Literal["127.0.0.1", "0.0.0.0"] = "127.0.0.1"  # noqa: S104 - an explicit opt-in
    retry_backoff_s: float = Field(default=0.5, gt=0)
    retry_backoff_max_s: float = Field(default=10.0, gt=0)
    transaction_timeout_ms: int = Field(
        default=15_000,
        ge=1000,
        description="Bounds how long a crashed predictor's open transaction blocks readers.",
    )
    instance_id: str | None = Field(
        default=None,
        description="Stable per replica (e.g. an ordinal) so a restart fences its predecessor at once.",
    )
    statistics_interval_ms: int = Field(default=5000, ge=0)
    shadow: bool = Field(
        default=True,
        description="Also predict with @challenger when it exists (off: champion only, "
        "for capacity or a benchmark of the champions).",
    )


class PolicySettings(BaseModel):
    """The decision policy's thresholds (see decision_service/policy.py)."""

    price_increment: float = Field(
        default=0.05, gt=0, description="Quotes are rounded to the nearest multiple of this."
    )
    long_ride_minutes: float = Field(default=30.0, gt=0)
    low_tip: float = Field(
        default=1.0, ge=0, description="A long ride expecting a tip below this earns an incentive."
    )
    min_cost_per_minute: float = Field(default=0.3, ge=0)
    max_cost_per_minute: float = Field(default=5.0, gt=0)


class EvaluationSettings(BaseModel):
    """Online evaluation of every model version against ground truth."""

    window_rides: int = Field(default=1000, ge=1, description="The sliding window, in rides.")
    promote_margin: float = Field(
        default=0.05, ge=0, lt=1, description="A challenger's RMSE must be this much lower."
    )
    promote_min_rides: int = Field(default=500, ge=1)
    auto_promote: bool = Field(
        default=False, description="Promote a winning challenger through the registry."
    )
    error_ratio_threshold: float = Field(
        default=1.5,
        gt=0,
        description="Retrain when a champion's windowed MAE exceeds its validation MAE by this.",
    )


class DriftSettings(BaseModel):
    """Feature drift of the live stream against the champion's training profile."""

    enabled: bool = Field(default=True, description="Read rides.started to watch feature drift.")
    # A window of a few thousand rides covers hours, not the month the profile was made of: its
    # clock and calendar features always "drift". They are left out unless asked for.
    ignore_features: tuple[str, ...] = (
        "pickup_hour",
        "day_of_week",
        "is_weekend",
        "holiday",
        "peak",
        "overnight",
    )
    window_rides: int = Field(default=5000, ge=100)
    min_rides: int = Field(default=1000, ge=1, description="No PSI before this many rides.")
    psi_threshold: float = Field(default=0.25, gt=0)
    check_interval_s: float = Field(default=30.0, gt=0)
    retrain_cooldown_s: float = Field(default=6 * 3600.0, ge=0)


class DecisionSettings(BaseModel):
    """The decision service: join window, batching, the store, policy, evaluation, drift."""

    store_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql+psycopg://...); unset = a local SQLite file.",
    )
    home: Path = Field(default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state"))
    join_window_s: float = Field(
        default=10.0, gt=0, description="Decide on partial predictions this long after the first."
    )
    batch_max_messages: int = Field(default=2000, ge=1)
    batch_max_wait_s: float = Field(default=0.1, gt=0, le=1.0)
    batch_linger_s: float = Field(
        default=0.1, ge=0, le=1.0, description="As the predictor's: batches at most this often."
    )
    metrics_port: int = Field(default=0, ge=0, le=65535, description="0 = no /metrics server.")
    metrics_host: Literal["127.0.0.1", "0.0.0.0"] = "127.0.0.1"  # noqa: S104 - an explicit opt-in
    instance_id: str = Field(
        default="0",
        description="Stable per replica: its transactional id and its in-flight publication.",
    )
    transaction_timeout_ms: int = Field(default=15_000, ge=1000)
    retry_backoff_s: float = Field(default=0.5, gt=0)
    retry_backoff_max_s: float = Field(default=10.0, gt=0)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)

    @property
    def resolved_store_url(self) -> str:
        """The store every reader and writer uses."""
        return self.store_url or f"sqlite:///{self.home / 'decisions.db'}"


class GatewaySettings(BaseModel):
    """The HTTP gateway: where it listens, its limits, opt-in security and the A/B split."""

    host: str = Field(default="127.0.0.1", description="Loopback unless deliberately exposed.")
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=16_384, ge=256, description="Larger bodies get 413.")
    api_key: SecretStr | None = Field(
        default=None, description="When set, opted-in requests must carry it in X-API-Key."
    )
    delivery_timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=30,
        description="How long an opted-in request waits for the broker's acknowledgement.",
    )
    events_timeout_s: float = Field(
        default=30.0, gt=0, le=300, description="How long an SSE stream waits for the result."
    )
    events_poll_s: float = Field(default=0.2, gt=0)
    challenger_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of clients (sticky by client id) answered by the simple @challenger.",
    )
    readiness_cache_s: float = Field(default=5.0, ge=0)


class MlflowSettings(BaseModel):
    """Tracking and registry: a local SQLite file and artifact folder unless a server is set."""

    tracking_uri: str | None = Field(
        default=None, description="e.g. http://127.0.0.1:5000; unset = the local SQLite store."
    )
    home: Path = Field(default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state") / "mlflow")
    experiment: str = "ridestream"

    @property
    def resolved_tracking_uri(self) -> str:
        """The tracking (and registry) URI every process uses."""
        return self.tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        """Where the local store keeps artifacts (models, plots, profiles)."""
        return self.home / "artifacts"


class ModelSettings(BaseModel):
    """How services load models from the registry."""

    backend: Literal["booster", "lleaves"] = "booster"
    poll_interval_s: float = Field(default=10.0, gt=0, description="How often aliases are re-read.")
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache") / "models")


class KestraSettings(BaseModel):
    """The Kestra server that orchestrates training (unset URL = no Kestra)."""

    url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    tenant: str = "main"
    namespace: str = "ridestream"
    flow_id: str = "train-models"
    timeout_s: float = Field(default=30.0, gt=0)


class Settings(BaseSettings):
    """Everything configurable in ridestream; build it once and hand it to the clients."""

    model_config = SettingsConfigDict(
        env_prefix="RIDESTREAM_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    kafka_bootstrap: str | None = Field(
        default=None,
        description="bootstrap.servers of an existing cluster; unset = the local broker.",
    )
    kafka_config: dict[str, KafkaConfigValue] = Field(
        default_factory=dict,
        description="librdkafka options for every client (security.protocol, sasl.*, ssl.*).",
    )
    producer_config: dict[str, KafkaConfigValue] = Field(default_factory=dict)
    consumer_config: dict[str, KafkaConfigValue] = Field(default_factory=dict)
    delivery_timeout_ms: int = Field(
        default=30_000,
        ge=1,
        description="How long a produced message may wait for its acknowledgement (message.timeout.ms).",
    )
    queue_full_retries: int = Field(default=20, ge=0)
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
    schemas_dir: Path | None = Field(default=None, description="Where the .avsc files live.")
    log_level: str = "INFO"

    @field_validator("kafka_config", "producer_config", "consumer_config")
    @classmethod
    def _no_bootstrap_inside(
        cls, value: dict[str, KafkaConfigValue]
    ) -> dict[str, KafkaConfigValue]:
        if "bootstrap.servers" in value:
            raise ValueError("set bootstrap.servers through RIDESTREAM_KAFKA_BOOTSTRAP")
        return value

    @property
    def bootstrap_servers(self) -> str:
        """The cluster to talk to: the configured one, else the local broker's listener."""
        return self.kafka_bootstrap or f"{self.local_kafka.host}:{self.local_kafka.port}"

    @property
    def uses_local_kafka(self) -> bool:
        """True when no external cluster is configured."""
        return self.kafka_bootstrap is None


@cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
