"""Feature drift: the population stability index of the live stream's features against the
reference profile logged with the duration champion (``reference_profile.json``, see
ridestream/ml/profiles.py), per feature, as a metric; retraining is triggered when one crosses the
threshold.

The live window holds the features of the last ``window_rides`` valid rides in a ring buffer
(fixed memory); PSI is computed every ``check_interval_s`` once ``min_rides`` have been seen.
RideStarted messages are kept as they come (the last ``window_rides`` of them) and decoded only
when PSI is computed: decoding every ride as it passes cost the service about a tenth of its time,
for a window read twice a minute.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from confluent_kafka import Message

from decision_service.background import in_background
from decision_service.metrics import DecisionMetrics
from decision_service.retrain import Retrainer
from ridestream.contracts.events import TARGETS, RideStarted
from ridestream.contracts.schemas import RIDE_STARTED
from ridestream.kafka.decoding import EventDecoder
from ridestream.ml.features import FEATURES, build_features, holiday_dates, zone_tables
from ridestream.ml.profiles import psi
from ridestream.ml.registry import CHAMPION, MODEL_NAMES, alias_version
from ridestream.ml.tracking import mlflow_client
from ridestream.serde.codecs import make_serde
from ridestream.settings import Settings
from ridestream.store.decisions import DecisionStore

logger = logging.getLogger(__name__)

PROFILE_ARTIFACT = "reference_profile.json"


def load_reference_profile(settings: Settings, target: str = "duration") -> dict[str, Any] | None:
    """The training profile of ``target``'s champion, or None when there is no champion."""
    client = mlflow_client(settings.mlflow)
    name = MODEL_NAMES[target]
    version = alias_version(client, name, CHAMPION)
    if version is None:
        return None
    run_id = client.get_model_version(name, version).run_id
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(run_id, PROFILE_ARTIFACT, folder)
        profile: dict[str, Any] = json.loads(Path(path).read_text())
    profile["model"] = {"name": name, "version": version}
    return profile


class DriftMonitor:
    """A ring buffer of live features and the PSI of each against the reference profile."""

    def __init__(
        self,
        settings: Settings,
        store: DecisionStore,
        metrics: DecisionMetrics,
        *,
        profile: dict[str, Any] | None = None,
        retrainer: Retrainer | None = None,
    ) -> None:
        self.config = settings.decisions.drift
        self.settings = settings
        self.metrics = metrics
        self.retrainer = retrainer or Retrainer(settings, store, metrics)
        self._profile = profile
        self._loading: Future[dict[str, Any] | None] | None = None
        self._window = np.full((self.config.window_rides, len(FEATURES)), np.nan)
        self._next = 0  # where the next row goes
        self.seen = 0  # RideStarted messages kept in total (the invalid ones included)
        self._filled = 0  # rows of the window holding a ride
        self._kept: deque[Message] = deque(maxlen=self.config.window_rides)
        self._reader = EventDecoder(RideStarted, make_serde(RIDE_STARTED, settings))
        self._last_check = time.monotonic()
        self.last_psi: dict[str, float] = {}

    @property
    def profile(self) -> dict[str, Any] | None:
        """The reference profile, once read from the registry (None until then: see prefetch)."""
        if self._profile is None and self.config.enabled:
            loading = self.prefetch()
            if loading.done():
                try:
                    self._profile = loading.result()
                except Exception:  # the registry being down must not stop decisions
                    logger.exception(
                        "could not load the reference profile; drift is not watched yet"
                    )
                    self._loading = None  # asked again at the next check
        return self._profile

    def prefetch(self) -> Future[dict[str, Any] | None]:
        """Start reading the reference profile off the decision loop (once): its first read
        imports mlflow, seconds of CPU that must not stall decisions."""
        if self._loading is None:
            self._loading = in_background(load_reference_profile, self.settings)
            # The feature tables too (zones, holidays: ~0.9 s once), or the first check pays.
            zone_tables()
            holiday_dates()
        return self._loading

    def keep(self, messages: Sequence[Message]) -> None:
        """Keep RideStarted messages for the window; they are read when PSI is computed (the
        invalid ones then stay out, as the predictors dead-letter them)."""
        if messages and self.config.enabled:
            self._kept.extend(messages)
            self.seen += len(messages)

    def _read_kept(self) -> None:
        # popleft, not iteration: the loop may keep more meanwhile (a check on another thread).
        messages = [self._kept.popleft() for _ in range(len(self._kept))]
        if messages:
            self._add_features(self._reader.read(messages).frame)

    def _add_features(self, rides: pd.DataFrame) -> None:
        if rides.empty:
            return
        features = build_features(rides)
        size = len(self._window)
        features = features[-size:]
        rows = (self._next + np.arange(len(features))) % size
        self._window[rows] = features
        self._next = int((self._next + len(features)) % size)
        self._filled = min(self._filled + len(features), size)

    def window(self) -> np.ndarray:
        """The live window's feature rows (oldest first is not guaranteed)."""
        self._read_kept()
        return self._window[: self._filled]

    def compute(self) -> dict[str, float]:
        """PSI per feature of the window against the profile (empty before ``min_rides``)."""
        profile = self.profile
        if profile is None or self.seen < self.config.min_rides:
            return {}
        window = self.window()
        return {
            name: psi(entry, window[:, FEATURES.index(name)])
            for name, entry in profile["features"].items()
            if name in FEATURES and name not in self.config.ignore_features
        }

    def maybe_check(self, force: bool = False) -> dict[str, float]:
        """Every ``check_interval_s``: export PSI and trigger retraining past the threshold."""
        now = time.monotonic()
        if not force and now - self._last_check < self.config.check_interval_s:
            return {}
        self._last_check = now
        values = self.compute()
        for name, value in values.items():
            self.metrics.psi.labels(name).set(value)
        self.last_psi = values
        drifted = {n: v for n, v in values.items() if v > self.config.psi_threshold}
        if drifted:
            worst = max(drifted, key=drifted.__getitem__)
            reason = (
                f"feature drift: PSI of {worst} is {drifted[worst]:.3f} "
                f"(threshold {self.config.psi_threshold}) over the last "
                f"{self._filled} rides; drifted: {', '.join(sorted(drifted))}"
            )
            self.retrainer.trigger("drift", reason, [*TARGETS, "simple"])
        return values
