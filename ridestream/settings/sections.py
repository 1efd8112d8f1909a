"""The groups of settings (``RIDESTREAM_<GROUP>__<FIELD>``); a string under a field is its
description, read by the configuration reference (docs/configuration.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

KafkaConfigValue = str | int | float | bool


class Section(BaseModel):
    """A group of settings; a string under a field is its description (the reference page)."""

    model_config = ConfigDict(use_attribute_docstrings=True)


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback) / "ridestream"


class TopicSettings(Section):
    """Topic names (with a common prefix for multi-tenant clusters) and how to create them."""

    prefix: str = ""
    """Prefix of every topic name (shared clusters)."""
    started: str = "rides.started"
    """RideStarted events: the backend's and the gateway's rides."""
    completed: str = "rides.completed"
    """RideCompleted events: the ground truth."""
    predictions: str = "rides.predictions"
    """Every model's predictions."""
    decisions: str = "rides.decisions"
    """The decision service's decisions."""
    dlq: str = "rides.dlq"
    """Dead letters: what could not be processed, with why."""
    partitions: int = Field(default=6, ge=1)
    """Partitions of the topics `ridestream topics create` makes."""
    replication_factor: int | None = Field(default=None, ge=1)
    """Replication factor of the topics it makes; unset: 3 on a cluster of three or more brokers,
    else 1."""
    min_insync_replicas: int | None = Field(default=None, ge=1)
    """Their min.insync.replicas; unset: 2 when the replication factor is 3 or more, else 1."""

    def names(self) -> dict[str, str]:
        """Role → full topic name, prefix applied."""
        roles = ("started", "completed", "predictions", "decisions", "dlq")
        return {role: self.prefix + getattr(self, role) for role in roles}

    def full(self, role: str) -> str:
        """The full name of one topic role (``started``, ``completed``, ...)."""
        return self.names()[role]


class LocalKafkaSettings(Section):
    """The local KRaft broker, or cluster, that ``ridestream kafka start`` runs from Maven
    Central jars: node ``i`` (from 0) listens on ``port + 2i`` and ``controller_port + 2i``."""

    brokers: int = Field(default=1, ge=1, le=9)
    """Nodes of the local cluster (each a combined broker and controller)."""
    version: str = "4.2.1"
    """Kafka version fetched from Maven Central."""
    host: Literal["127.0.0.1"] = "127.0.0.1"
    """The local broker listens on loopback only."""
    port: int = Field(default=9092, ge=1, le=65535)
    """The local broker's client listener."""
    controller_port: int = Field(default=9093, ge=1, le=65535)
    """The local broker's KRaft controller listener."""
    home: Path = Field(default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state") / "kafka")
    """The local broker's configuration, data and logs."""
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache") / "kafka")
    """Kafka's jars, fetched once."""
    heap: str = "768m"
    """The local broker's JVM heap."""
    start_timeout_s: float = Field(default=90.0, gt=0)
    """How long `kafka start` waits for the broker to answer."""
    stop_timeout_s: float = Field(default=30.0, gt=0)
    """How long `kafka stop` waits for a clean shutdown."""

    def node_ports(self, brokers: int | None = None) -> list[tuple[int, int]]:
        """(client port, controller port) of each node."""
        return [
            (self.port + 2 * i, self.controller_port + 2 * i)
            for i in range(brokers or self.brokers)
        ]

    def bootstrap(self, brokers: int | None = None) -> str:
        """Every node's client listener, comma separated."""
        return ",".join(f"{self.host}:{port}" for port, _ in self.node_ports(brokers))


class PredictorSettings(Section):
    """The per-target predictor loop."""

    batch_max_messages: int = Field(default=1000, ge=1)
    """The largest batch (and, full, the sign of a backlog)."""
    batch_max_wait_s: float = Field(
        default=0.1, gt=0, le=1.0, description="At most 1 s: signals are served between polls."
    )
    batch_linger_s: float = Field(
        default=0.1,
        ge=0,
        le=1.0,
        description="The most a batch that is not full gathers after the previous one was taken. "
        "Within it the loop lingers about as long as its batches take to process (fewer "
        "transactions when that pays, milliseconds of wait when cycles are quick); 0 = no linger.",
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
    """Where /metrics listens (0.0.0.0 only deliberately)."""
    retry_backoff_s: float = Field(default=0.5, gt=0)
    """The first wait after a failed batch; doubles per failure."""
    retry_backoff_max_s: float = Field(default=10.0, gt=0)
    """The longest wait between retries."""
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
    """librdkafka statistics (consumer lag) for /metrics; 0 = off."""
    shadow: bool = Field(
        default=True,
        description="Also predict with @challenger when it exists (off: champion only, "
        "for capacity or a benchmark of the champions).",
    )


class PolicySettings(Section):
    """The decision policy's thresholds (see decision_service/policy.py)."""

    price_increment: float = Field(
        default=0.05, gt=0, description="Quotes are rounded to the nearest multiple of this."
    )
    long_ride_minutes: float = Field(default=30.0, gt=0)
    """A ride at least this long is a long ride."""
    low_tip: float = Field(
        default=1.0, ge=0, description="A long ride expecting a tip below this earns an incentive."
    )
    min_cost_per_minute: float = Field(default=0.3, ge=0)
    """Below this the cost is flagged for review."""
    max_cost_per_minute: float = Field(default=5.0, gt=0)
    """Above this the cost is flagged for review."""


class EvaluationSettings(Section):
    """Online evaluation of every model version against ground truth."""

    window_rides: int = Field(default=1000, ge=1, description="The sliding window, in rides.")
    promote_margin: float = Field(
        default=0.05, ge=0, lt=1, description="A challenger's RMSE must be this much lower."
    )
    promote_min_rides: int = Field(default=500, ge=1)
    """Rides both models predicted before a recommendation."""
    auto_promote: bool = Field(
        default=False, description="Promote a winning challenger through the registry."
    )
    error_ratio_threshold: float = Field(
        default=1.5,
        gt=0,
        description="Retrain when a champion's windowed MAE exceeds its validation MAE by this.",
    )


class DriftSettings(Section):
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
    """Features left out of PSI (by default the clock and the calendar)."""
    window_rides: int = Field(default=5000, ge=100)
    """Live rides in the PSI window."""
    min_rides: int = Field(default=1000, ge=1, description="No PSI before this many rides.")
    psi_threshold: float = Field(default=0.25, gt=0)
    """A feature's PSI above this triggers retraining."""
    check_interval_s: float = Field(default=30.0, gt=0)
    """How often PSI is computed."""
    retrain_cooldown_s: float = Field(default=6 * 3600.0, ge=0)
    """At most one retraining trigger this often (kept in the store)."""


class DecisionSettings(Section):
    """The decision service: join window, batching, the store, policy, evaluation, drift."""

    store_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql+psycopg://...); unset = a local SQLite file.",
    )
    home: Path = Field(default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state"))
    """Where the default SQLite store lives."""
    join_window_s: float = Field(
        default=10.0, gt=0, description="Decide on partial predictions this long after the first."
    )
    batch_max_messages: int = Field(default=2000, ge=1)
    """The largest batch."""
    batch_max_wait_s: float = Field(default=0.1, gt=0, le=1.0)
    """How long a poll waits when nothing has arrived."""
    batch_linger_s: float = Field(
        default=0.1, ge=0, le=1.0, description="As the predictor's: the adaptive linger's bound."
    )
    metrics_port: int = Field(default=0, ge=0, le=65535, description="0 = no /metrics server.")
    metrics_host: Literal["127.0.0.1", "0.0.0.0"] = "127.0.0.1"  # noqa: S104 - an explicit opt-in
    """Where /metrics listens (0.0.0.0 only deliberately)."""
    instance_id: str = Field(
        default="0",
        description="Stable per replica: its transactional id and its in-flight publication.",
    )
    transaction_timeout_ms: int = Field(default=15_000, ge=1000)
    """Bounds how long a crashed service's open transaction blocks readers."""
    retry_backoff_s: float = Field(default=0.5, gt=0)
    """The first wait after a failed batch; doubles per failure."""
    retry_backoff_max_s: float = Field(default=10.0, gt=0)
    """The longest wait between retries."""
    policy: PolicySettings = Field(default_factory=PolicySettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)

    @property
    def resolved_store_url(self) -> str:
        """The store every reader and writer uses."""
        return self.store_url or f"sqlite:///{self.home / 'decisions.db'}"


class GatewaySettings(Section):
    """The HTTP gateway: where it listens, its limits, opt-in security and the A/B split."""

    host: str = Field(default="127.0.0.1", description="Loopback unless deliberately exposed.")
    port: int = Field(default=8000, ge=0, le=65535)
    """The gateway's port."""
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
    """How often a waiting stream reads the store when the gateway is not following decisions."""
    follow_decisions: bool = True
    """Follow `rides.decisions`, so waiting streams are woken by their ride's decision."""
    challenger_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of clients (sticky by client id) answered by the simple @challenger.",
    )
    readiness_cache_s: float = Field(default=5.0, ge=0)
    """How long /readyz reuses its last look at the cluster."""


class MlflowSettings(Section):
    """Tracking and registry: a local SQLite file and artifact folder unless a server is set."""

    tracking_uri: str | None = Field(
        default=None, description="e.g. http://127.0.0.1:5000; unset = the local SQLite store."
    )
    home: Path = Field(default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state") / "mlflow")
    """The local store: its SQLite file and artifacts/."""
    experiment: str = "ridestream"
    """The experiment training runs go to."""

    @property
    def resolved_tracking_uri(self) -> str:
        """The tracking (and registry) URI every process uses."""
        return self.tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        """Where the local store keeps artifacts (models, plots, profiles)."""
        return self.home / "artifacts"


class ModelSettings(Section):
    """How services load models from the registry."""

    backend: Literal["booster", "lleaves"] = "booster"
    """`booster` (native LightGBM) or `lleaves` (compiled; the `compiled` extra)."""
    poll_interval_s: float = Field(default=10.0, gt=0, description="How often aliases are re-read.")
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache") / "models")
    """Compiled (lleaves) models, keyed by model content."""


class KestraSettings(Section):
    """The Kestra server that orchestrates training (unset URL = no Kestra)."""

    url: str | None = None
    """The Kestra server, e.g. http://127.0.0.1:8080."""
    username: str | None = None
    """Basic-auth user."""
    password: SecretStr | None = None
    """Basic-auth password."""
    tenant: str = "main"
    """The API's tenant (open-source Kestra has only `main`)."""
    namespace: str = "ridestream"
    """The training flow's namespace."""
    flow_id: str = "train-models"
    """The training flow's id."""
    timeout_s: float = Field(default=30.0, gt=0)
    """HTTP timeout of each request."""
