"""Retraining triggers: when drift or online error crosses its threshold, start the Kestra
training flow (through ``ridestream.kestra.KestraClient``), at most once per cooldown. Without a
Kestra URL the trigger is logged and recorded, so an operator sees what would have run."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from decision_service.metrics import DecisionMetrics
from ridestream.clock import now_ms
from ridestream.kestra import KestraClient, KestraError
from ridestream.settings import Settings
from ridestream.store.decisions import DecisionStore

logger = logging.getLogger(__name__)

MAX_REASON = 500  # characters: the flow's input, and what the store keeps


class Retrainer:
    """Triggers the training flow with a cooldown that survives restarts (kept in the store)."""

    def __init__(
        self,
        settings: Settings,
        store: DecisionStore,
        metrics: DecisionMetrics,
        client_factory: Callable[[], KestraClient] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.client_factory = client_factory or (lambda: KestraClient(settings.kestra))

    def trigger(self, kind: str, reason: str, targets: Sequence[str]) -> str | None:
        """Start retraining of ``targets`` unless the cooldown holds; the execution id, if any.

        ``kind`` is a metric label (``drift`` or ``online_error``); ``reason`` says what crossed.
        """
        reason = reason[:MAX_REASON]
        at = now_ms()
        last = self.store.last_retrain_ms()
        cooldown_ms = self.settings.decisions.drift.retrain_cooldown_s * 1000
        if last is not None and at - last < cooldown_ms:
            logger.debug("retraining cooldown holds (%s)", reason)
            self.metrics.retrains.labels(kind, "cooldown").inc()
            return None
        kestra = self.settings.kestra
        if not kestra.url:
            logger.warning(
                "retraining would be triggered now (no Kestra configured): %s; targets %s",
                reason,
                ",".join(targets),
            )
            self.store.record_retrain(at, reason, None)
            self.metrics.retrains.labels(kind, "logged").inc()
            return None
        try:
            with self.client_factory() as client:
                execution = client.run(
                    kestra.namespace,
                    kestra.flow_id,
                    {"targets": ",".join(targets), "reason": reason},
                )
        except KestraError as exc:
            # Not recorded: the next check tries again instead of waiting out a cooldown.
            logger.error("could not trigger retraining (%s): %s", reason, exc)
            self.metrics.retrains.labels(kind, "error").inc()
            return None
        logger.warning(
            "retraining triggered: Kestra execution %s of %s.%s (%s)",
            execution.id,
            kestra.namespace,
            kestra.flow_id,
            reason,
        )
        self.store.record_retrain(at, reason, execution.id)
        self.metrics.retrains.labels(kind, "triggered").inc()
        return execution.id
