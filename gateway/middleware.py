"""Request metrics for every route, as a plain ASGI middleware."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.state import Gateway


class RequestMetrics:
    """Requests by route, method and status, and their latency: a plain ASGI middleware (the
    ``@app.middleware("http")`` kind wraps every request in extra tasks, most of what a trivial
    request costs)."""

    def __init__(self, app: ASGIApp, gateway: Callable[[], Gateway | None]) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            gateway = self.gateway()
            if gateway is not None:
                route = getattr(scope.get("route"), "path", "unmatched")
                method = scope["method"]
                gateway.metrics.requests.labels(route, method, str(status)).inc()
                gateway.metrics.latency.labels(route, method).observe(time.perf_counter() - started)
