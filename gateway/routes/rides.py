"""``GET /v1/rides/{ride_id}`` and its event stream: the enhanced result from the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException
from fastapi.sse import EventSourceResponse, ServerSentEvent

from gateway.deps import GatewayDep, KnownRide
from gateway.schemas import RideResponse, ride_response

router = APIRouter()


@router.get("/v1/rides/{ride_id}", response_model=RideResponse, responses={404: {}})
async def ride_result(ride_id: str, gateway: GatewayDep) -> RideResponse:
    """Enhanced predictions per target and the decision; ``pending`` while on the way."""
    result = await asyncio.to_thread(gateway.store.ride, ride_id)
    if result is not None:
        return ride_response(result)
    if ride_id in gateway.opted_in:
        return RideResponse(
            ride_id=ride_id, status="pending", predictions=[], decision=None, actual=None
        )
    raise HTTPException(404, f"no ride {ride_id!r}: never opted in, or forgotten")


@router.get("/v1/rides/{ride_id}/events", response_class=EventSourceResponse, responses={404: {}})
async def ride_events(ride_id: KnownRide, gateway: GatewayDep) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: ``result`` with the decided ride when it lands, else ``timeout``."""
    config = gateway.settings.gateway
    deadline = time.monotonic() + config.events_timeout_s
    sent_pending = False
    while time.monotonic() < deadline:
        result = await asyncio.to_thread(gateway.store.ride, ride_id)
        if result is not None and result.decision is not None:
            yield ServerSentEvent(
                event="result", data=ride_response(result).model_dump(mode="json")
            )
            return
        if not sent_pending:
            yield ServerSentEvent(event="pending", data={"ride_id": ride_id})
            sent_pending = True
        await asyncio.sleep(config.events_poll_s)
    yield ServerSentEvent(
        event="timeout", data={"ride_id": ride_id, "waited_s": config.events_timeout_s}
    )
