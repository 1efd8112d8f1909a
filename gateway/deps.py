"""The routes' typed dependencies: the shared gateway state, the API key, a ride that exists.

Every dependency is ``async``: FastAPI runs plain functions in its thread pool, a hop a request
cannot afford for a lookup. ``POST /v1/predictions``, the one route on the hot path, takes the
request alone and calls :func:`state_of` and :func:`api_key_accepted` itself: resolving
dependencies on every request would cost it a measurable share of its CPU (``bench/gateway.py``).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from gateway.state import Gateway

API_KEY_HEADER = "X-API-Key"


def state_of(request: Request) -> Gateway:
    """The state the app's lifespan made."""
    gateway: Gateway = request.app.state.gateway
    return gateway


async def get_gateway(request: Request) -> Gateway:
    """:func:`state_of` as a dependency."""
    return state_of(request)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def api_key_accepted(gateway: Gateway, provided: str | None) -> bool:
    """Whether a request may be enhanced: no key is configured, or it carries that key."""
    expected = gateway.settings.gateway.api_key
    if expected is None:
        return True
    return provided is not None and secrets.compare_digest(provided, expected.get_secret_value())


async def api_key_dependency(
    gateway: GatewayDep, x_api_key: Annotated[str | None, Header()] = None
) -> bool:
    """:func:`api_key_accepted` as a dependency, for routes off the hot path."""
    return api_key_accepted(gateway, x_api_key)


ApiKeyAccepted = Annotated[bool, Depends(api_key_dependency)]


async def known_ride(ride_id: str, gateway: GatewayDep) -> str:
    """The ride id of a ride the gateway or the store knows; 404 otherwise (before an event
    stream, and its 200, begins)."""
    if ride_id not in gateway.opted_in and await gateway.ride(ride_id, "lookup") is None:
        raise HTTPException(404, f"no ride {ride_id!r}: never opted in, or forgotten")
    return ride_id


KnownRide = Annotated[str, Depends(known_ride)]
