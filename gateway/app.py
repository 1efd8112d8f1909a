"""The gateway: a thin FastAPI service in front of the stream.

``POST /v1/predictions`` answers at once with the ``ride-duration-simple`` champion (or, for a
configured share of clients, sticky by a hash of the client's id, its challenger). With
``"enhanced": true`` the ride is also published to ``rides.started`` through the asyncio producer
and the answer waits, bounded, for the broker's acknowledgement: ``enhanced.status`` is then
``pending`` with the link to follow, or ``unavailable`` with the reason. The synchronous answer
never depends on Kafka. ``GET /v1/rides/{ride_id}`` reads the enhanced result (predictions per
target and the decision) from the decision store, and with ``?wait_s=`` waits for it (a
long-poll); ``…/events`` pushes it as Server-Sent Events when it lands. Waiting costs no store
queries: the gateway follows the decisions topic and wakes the rides decided (``follower.py``).
``/healthz``, ``/readyz``, ``/metrics`` and the OpenAPI docs complete it.

This module only assembles the app: the routes are in ``routes/``, their dependencies in
``deps.py``, the request and response models in ``schemas.py``, the shared state in ``state.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.middleware import RequestMetrics
from gateway.routes import health, predictions, rides
from gateway.state import Gateway, make_gateway
from ridestream.runtime import settle_for_streaming
from ridestream.settings import Settings


def create_app(settings: Settings, gateway: Gateway | None = None) -> FastAPI:
    """The gateway's ASGI app (``gateway`` given by tests; otherwise made at startup)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = gateway if gateway is not None else await asyncio.to_thread(make_gateway, settings)
        app.state.gateway = state
        settle_for_streaming()  # the model, the clients and the routes loaded: the rest is steady
        state.champion.start_polling()
        if state.challenger is not None:
            state.challenger.start_polling()
        state.follow_decisions()
        try:
            yield
        finally:
            if state.follower is not None:
                await asyncio.to_thread(state.follower.stop)
            state.champion.stop()
            if state.challenger is not None:
                state.challenger.stop()
            if state.publisher is not None:
                await asyncio.to_thread(state.publisher.close, 5.0)
            state.store.close()

    app = FastAPI(
        title="ridestream gateway",
        version="1",
        summary="Ride duration at once; enhanced duration, cost, tip and decision on opt-in.",
        lifespan=lifespan,
        max_body_size=settings.gateway.max_body_bytes,
    )
    app.add_middleware(RequestMetrics, gateway=lambda: getattr(app.state, "gateway", None))
    for module in (predictions, rides, health):
        # The routes themselves, not the router: include_router nests it, and every request
        # would be matched through the nesting first.
        app.router.routes.extend(module.router.routes)
    return app
