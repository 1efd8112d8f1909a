"""What the gateway's routes share: the simple model's aliases, the publisher, the store, the
metrics, and the opted-in rides it remembers."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from cachetools import TTLCache

from gateway.follower import DecisionFollower, WaitingRides
from gateway.metrics import GatewayMetrics
from producers.publisher import AsyncRidePublisher
from ridestream.exceptions import RidestreamError
from ridestream.kafka.clients import cluster_metadata, make_admin
from ridestream.ml.models import AliasedModel, LoadedModel
from ridestream.ml.registry import CHALLENGER, CHAMPION, MODEL_NAMES
from ridestream.ml.tracking import mlflow_client
from ridestream.settings import Settings
from ridestream.store.decisions import DecisionStore
from ridestream.store.records import RideResult

logger = logging.getLogger(__name__)

SIMPLE_MODEL = MODEL_NAMES["simple"]
CITY = ZoneInfo("America/New_York")  # pickup times are the city's wall clock, as in TLC data
OPTED_IN_MEMORY = 100_000  # rides accepted for enhancement, remembered for an hour


def bucket(key: str) -> float:
    """A stable number in [0, 1) for a client: the same client always lands on the same model."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class Gateway:
    """Everything the routes share: models, publisher, store, metrics."""

    settings: Settings
    champion: AliasedModel
    challenger: AliasedModel | None
    store: DecisionStore
    metrics: GatewayMetrics
    publisher: AsyncRidePublisher | None = None
    publisher_error: str | None = None
    follower: DecisionFollower | None = None
    _ready_at: float = 0.0
    _broker_ok: bool = False
    _admin: Any = None

    def __post_init__(self) -> None:
        self.opted_in: TTLCache[str, float] = TTLCache(maxsize=OPTED_IN_MEMORY, ttl=3600)
        self.waiting = WaitingRides()

    def follow_decisions(self) -> None:
        """Start following the decisions (on the event loop's thread: waiters are woken there)."""
        if self.settings.gateway.follow_decisions and self.follower is None:
            try:
                self.follower = DecisionFollower(
                    self.settings,
                    self.waiting,
                    asyncio.get_running_loop(),
                    self.metrics.decision_delivery,
                )
                self.follower.start()
            except Exception:  # like the publisher: the synchronous path never needs Kafka
                logger.exception("not following decisions; waiting streams poll the store")
                self.follower = None

    @property
    def following(self) -> bool:
        """Whether waiting streams are woken by decisions (else they poll the store)."""
        return self.follower is not None and self.follower.following

    def delivered(self, ride_id: str, via: str) -> None:
        """A decided result reached its rider: how long after the opt-in."""
        opted_in_at = self.opted_in.get(ride_id)
        if opted_in_at is not None:
            self.metrics.enhanced_result.labels(via).observe(max(time.time() - opted_in_at, 0.0))

    async def ride(self, ride_id: str, why: str) -> RideResult | None:
        """What the store holds of a ride, counted by why it was read."""
        self.metrics.store_reads.labels(why).inc()
        return await asyncio.to_thread(self.store.ride, ride_id)

    def model_for(self, client: str) -> LoadedModel:
        champion = self.champion.current
        assert champion is not None, "the champion handle always holds a model"
        challenger = self.challenger.current if self.challenger else None
        share = self.settings.gateway.challenger_share
        if challenger is not None and share > 0 and bucket(client) < share:
            return challenger
        return champion

    def broker_reachable(self) -> bool:
        """Whether the cluster answers a metadata request (cached for a few seconds)."""
        now = time.monotonic()
        if now - self._ready_at > self.settings.gateway.readiness_cache_s:
            if self._admin is None:  # one client for every check: each new one connects anew
                self._admin = make_admin(self.settings)
            try:
                cluster_metadata(self._admin, timeout_s=2.0)
                self._broker_ok = True
            except RidestreamError:
                self._broker_ok = False
            self._ready_at = now
        return self._broker_ok


def make_gateway(settings: Settings) -> Gateway:
    """Load the simple model's aliases and open the store and the publisher."""
    client = mlflow_client(settings.mlflow)
    champion = AliasedModel(client, SIMPLE_MODEL, CHAMPION, settings.models)
    challenger = AliasedModel(client, SIMPLE_MODEL, CHALLENGER, settings.models, required=False)
    gateway = Gateway(
        settings=settings,
        champion=champion,
        challenger=challenger,
        store=DecisionStore(settings.decisions.resolved_store_url),
        metrics=GatewayMetrics(),
    )
    try:
        # The answer to an opted-in request waits this long, so a message may not outlive it:
        # "unavailable" then means the ride will not arrive later after all.
        timeout_ms = int(settings.gateway.delivery_timeout_s * 1000)
        gateway.publisher = AsyncRidePublisher(
            settings, **{"message.timeout.ms": timeout_ms, "linger.ms": 1}
        )
    except Exception as exc:  # a bad Kafka config must not take the synchronous path down
        logger.exception("no Kafka producer; enhanced predictions are unavailable")
        gateway.publisher_error = f"no Kafka producer: {exc}"
    return gateway
