"""A dispatch service that acts on every decision: run it, stop it with Ctrl-C or SIGTERM.

    RIDESTREAM_KAFKA_BOOTSTRAP=broker:9092 python docs/examples/dispatch.py

Settings come from the environment like every ridestream process (docs/configuration.md), the
cluster's security settings included. Delivery is at least once: ``dispatch`` may see a decision
again after a crash, so it keys what it does by ``ride_id``.
"""

from __future__ import annotations

import logging
import signal

from producers.subscriber import DecisionSubscriber
from ridestream.contracts.events import Decision, Prediction
from ridestream.settings import Settings

dispatched: set[str] = set()  # stands in for the dispatch system's own idempotency record


def dispatch(event: Decision | Prediction) -> None:
    assert isinstance(event, Decision)
    if event.ride_id in dispatched:
        return  # a redelivery: already acted on
    dispatched.add(event.ride_id)
    print(f"dispatch {event.ride_id}: quote {event.quote}, actions {event.actions}", flush=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    with DecisionSubscriber(Settings(), "dispatch") as subscriber:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: subscriber.stop())
        subscriber.run(dispatch)  # returns after stop(); closing commits what was handled


if __name__ == "__main__":
    main()
