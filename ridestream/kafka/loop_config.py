"""How an exactly-once loop batches, retries and bounds its transactions (``loop.py`` runs it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ridestream.settings import DecisionSettings, KafkaConfigValue, PredictorSettings

# A commit's offsets and commit calls get 30 s each from librdkafka; one still running this long
# past the transaction timeout is stuck (seen while a broker restarts), not slow.
COMMIT_GRACE_S = 30.0


@dataclass(frozen=True)
class LoopConfig:
    """How the loop batches, commits and retries."""

    batch_max_messages: int
    batch_max_wait_s: float
    batch_linger_s: float
    retry_backoff_s: float
    retry_backoff_max_s: float
    transaction_timeout_ms: int
    transaction_max_batches: int = 1
    overlap: bool = False  # commit on a helper thread while the next batch is prepared
    empty_batches: bool = False  # prepare empty batches too (periodic work in the transaction)
    retriable: tuple[type[Exception], ...] = ()  # the work's errors that a retry can cure
    consumer_overrides: dict[str, KafkaConfigValue] = field(default_factory=dict)
    stats_cb: Callable[[str], None] | None = None
    # Told the partitions this replica holds, per topic, after every change of its assignment.
    on_assignment: Callable[[dict[str, int]], None] | None = None

    @property
    def commit_timeout_s(self) -> float:
        """How long the loop waits for a commit on the helper thread before it gives the producer
        up: past the transaction timeout the coordinator aborts the transaction anyway."""
        return self.transaction_timeout_ms / 1000 + COMMIT_GRACE_S

    @classmethod
    def of(cls, section: PredictorSettings | DecisionSettings, **options: Any) -> LoopConfig:
        """A service's loop: batching, retries and the transaction timeout from its settings
        section (the fields of the same names), the rest from ``options``."""
        return cls(
            batch_max_messages=section.batch_max_messages,
            batch_max_wait_s=section.batch_max_wait_s,
            batch_linger_s=section.batch_linger_s,
            retry_backoff_s=section.retry_backoff_s,
            retry_backoff_max_s=section.retry_backoff_max_s,
            transaction_timeout_ms=section.transaction_timeout_ms,
            **options,
        )
