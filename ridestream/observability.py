"""What every service's Prometheus metrics share: buckets, a bulk observe, the /metrics server.

Each service defines its own metrics (``consumers/metrics.py``, ``decision_service/metrics.py``,
``gateway/metrics.py``), each process on its own registry (tests run several in one interpreter),
served with ``serve(registry, port)`` on 127.0.0.1 by default. The same server answers the
probes an orchestrator asks: ``/healthz`` (the process answers) and ``/readyz`` (it serves: 200
once the service says so, 503 before).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, make_wsgi_app

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000)


def observe_all(histogram: Any, amounts: np.ndarray) -> None:
    """``histogram.observe`` of every amount, one update per bucket instead of one per amount.

    The same buckets and sum as observing one by one (each amount counts in the first bucket whose
    upper bound it does not exceed), without an ``observe`` call per ride: at stream rates those
    calls cost more than the Kafka client. prometheus_client has no bulk observe, so this
    writes the histogram's own bucket and sum values.
    """
    bounds = np.asarray(histogram._upper_bounds)
    counts = np.bincount(np.searchsorted(bounds, amounts, side="left"), minlength=len(bounds))
    histogram._sum.inc(float(amounts.sum()))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A scrape every few seconds is not news."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress never holds the process up at exit


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


def probes_app(
    registry: CollectorRegistry, ready: Callable[[], bool] | None = None
) -> WSGIApplication:
    """``/healthz``, ``/readyz`` (``ready()``; always ready without one), and the metrics on
    every other path."""
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _json(start_response, "200 OK", {"alive": True})
        if path == "/readyz":
            serving = ready() if ready is not None else True
            status = "200 OK" if serving else "503 Service Unavailable"
            return _json(start_response, status, {"ready": serving})
        answer: Iterable[bytes] = metrics(environ, start_response)
        return answer

    return app


def serve(
    registry: CollectorRegistry,
    port: int,
    host: str = "127.0.0.1",
    ready: Callable[[], bool] | None = None,
) -> None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on host:port in a daemon thread (port 0:
    don't serve)."""
    if port:
        server = make_server(
            host, port, probes_app(registry, ready), _ThreadingServer, handler_class=_QuietHandler
        )
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        logger.info("metrics on http://%s:%d/metrics (probes: /healthz, /readyz)", host, port)


class MetricFactory:
    """A service's metrics on its own registry, one line each: name, help, label names."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def counter(self, name: str, documentation: str, *labels: str) -> Counter:
        """A counter with these label names."""
        return Counter(name, documentation, labels, registry=self.registry)

    def gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        """A gauge with these label names."""
        return Gauge(name, documentation, labels, registry=self.registry)

    def histogram(
        self,
        name: str,
        documentation: str,
        *labels: str,
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> Histogram:
        """A histogram with these label names (latency buckets unless told)."""
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)

    def info(self, name: str, documentation: str, *labels: str) -> Info:
        """An info metric with these label names."""
        return Info(name, documentation, labels, registry=self.registry)
