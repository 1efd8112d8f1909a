"""What every command module shares: settings, JSON output, signals, per-service options."""

from __future__ import annotations

import json
import logging
import signal
import threading

import typer

from ridestream.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def settings() -> Settings:
    """The process's settings (read from the environment once)."""
    return get_settings()


def echo_json(payload: object) -> None:
    """One JSON document on standard output."""
    typer.echo(json.dumps(payload, default=str, sort_keys=False))


def stop_on_signals() -> threading.Event:
    """SIGTERM/SIGINT only set the returned event; a second SIGINT interrupts at once."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        logger.info(
            "signal %s: finishing the batch in flight, then stopping", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def service_settings(group: str, **options: object) -> Settings:
    """The settings with a service group's command-line options (those given) applied."""
    current = settings()
    updates = {name: value for name, value in options.items() if value is not None}
    if not updates:
        return current
    section = getattr(current, group)
    return current.model_copy(update={group: section.model_copy(update=updates)})
