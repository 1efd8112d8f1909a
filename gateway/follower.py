"""The decisions the gateway follows, so a waiting rider is woken instead of polling the store.

Every gateway replica reads ``rides.decisions`` through the backend's own
:class:`producers.subscriber.DecisionSubscriber` in a group of its own (each replica sees every
decision), from the end of each partition as it was when the partition was assigned, without
committing (a replica never resumes: it starts at the end again). An SSE stream or long-poll
registers the ride it waits for, reads the store once, and then sleeps until the decision of that
ride arrives, costing no query while it waits.

Why that loses no decision: the decision service stores a decision before its transaction
publishes it. A decision older than the subscription's start offsets is therefore in the store
already when the follower is assigned, and every assignment wakes all waiters to read the store
once more; anything newer arrives through the subscription.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import TopicPartition
from prometheus_client import Histogram

from producers.subscriber import LATEST, DecisionSubscriber
from ridestream.contracts.events import Decision, Prediction
from ridestream.settings import Settings

logger = logging.getLogger(__name__)


class WaitingRides:
    """The rides that open streams and long-polls wait for; lives on the event loop's thread."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}

    @contextmanager
    def waiting(self, ride_id: str) -> Iterator[asyncio.Event]:
        """An event set when the ride's decision arrives (or the store should be read again)."""
        woken = asyncio.Event()
        self._waiting.setdefault(ride_id, set()).add(woken)
        try:
            yield woken
        finally:
            waiters = self._waiting.get(ride_id)
            if waiters is not None:
                waiters.discard(woken)
                if not waiters:
                    del self._waiting[ride_id]

    def __contains__(self, ride_id: str) -> bool:
        return ride_id in self._waiting

    def __len__(self) -> int:
        return len(self._waiting)

    def wake(self, ride_id: str) -> None:
        """The ride was decided: its waiters read the store."""
        for woken in self._waiting.get(ride_id, ()):
            woken.set()

    def wake_all(self) -> None:
        """Everyone reads the store once more (a new assignment: see the module's docstring)."""
        for waiters in self._waiting.values():
            for woken in waiters:
                woken.set()


class DecisionFollower:
    """A thread reading every decision, waking the waiters of the rides decided."""

    def __init__(
        self,
        settings: Settings,
        waiting: WaitingRides,
        loop: asyncio.AbstractEventLoop,
        delivery: Histogram | None = None,
    ) -> None:
        """``delivery`` observes each decision's age when it is read (decided_at → here)."""
        self._waiting, self._loop, self._delivery = waiting, loop, delivery
        group = f"{settings.topics.prefix}ridestream.gateway.{uuid.uuid4().hex[:12]}"
        self._subscriber = DecisionSubscriber(
            settings,
            "gateway",
            group_id=group,
            start=LATEST,
            commit=False,
            retries=0,
            on_assigned=self._assigned,
        )
        self._assigned_once = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decision-follower", daemon=True)

    @property
    def following(self) -> bool:
        """Whether decisions reach the waiters: assigned, and the thread alive."""
        return self._assigned_once.is_set() and self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def _assigned(self, partitions: list[TopicPartition]) -> None:
        logger.info("following %d decision partition(s)", len(partitions))
        self._assigned_once.set()
        self._loop.call_soon_threadsafe(self._waiting.wake_all)

    def _decided(self, event: Decision | Prediction) -> None:
        if self._delivery is not None and isinstance(event, Decision):
            self._delivery.observe(max(time.time() - event.decided_at.timestamp(), 0.0))
        # Read off the loop's thread; a waiter registered a moment after this check reads the
        # store after registering, where the decision already is.
        if event.ride_id in self._waiting:
            self._loop.call_soon_threadsafe(self._waiting.wake, event.ride_id)

    def _run(self) -> None:
        try:
            self._subscriber.run(self._decided, poll_timeout_s=0.2)
        except BaseException:
            logger.exception("the decision follower stopped; streams fall back to polling")
        finally:
            self._subscriber.close()
            if not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._waiting.wake_all)  # now they poll

    def stop(self, timeout_s: float = 10.0) -> None:
        self._subscriber.stop()
        self._thread.join(timeout_s)
