"""``GET /v1/rides/{ride_id}`` (a lookup, or a long-poll with ``wait_s``) and its event stream.

A waiting request reads the store once, then sleeps until the gateway's decision follower wakes
it for its ride (or its time is up); only without a follower (no Kafka) does it poll the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from gateway.deps import GatewayDep, KnownRide
from gateway.schemas import RideResponse, ride_response
from gateway.state import Gateway
from ridestream.store.records import RideResult

router = APIRouter()
MAX_WAIT_S = 60.0


async def watch(
    gateway: Gateway, ride_id: str, timeout_s: float
) -> AsyncIterator[RideResult | None]:
    """The ride's result once decided; ``None`` after each read that found it undecided. Ends
    after the decided result, or when ``timeout_s`` is up."""
    deadline = time.monotonic() + timeout_s
    with gateway.waiting.waiting(ride_id) as woken:
        while True:
            woken.clear()  # before the read: a decision landing during it wakes the next wait
            result = await gateway.ride(ride_id, "wait")
            if result is not None and result.decision is not None:
                yield result
                return
            yield None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if not gateway.following:
                remaining = min(remaining, gateway.settings.gateway.events_poll_s)
            with suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=remaining)


def pending(ride_id: str) -> RideResponse:
    return RideResponse(
        ride_id=ride_id, status="pending", predictions=[], decision=None, actual=None
    )


@router.get("/v1/rides/{ride_id}", response_model=RideResponse, responses={404: {}})
async def ride_result(
    ride_id: str,
    gateway: GatewayDep,
    wait_s: Annotated[
        float,
        Query(
            ge=0, le=MAX_WAIT_S, description="Wait up to this long for the decision (long-poll)."
        ),
    ] = 0.0,
) -> RideResponse:
    """Enhanced predictions per target and the decision; ``pending`` while on the way."""
    if wait_s > 0 and ride_id in gateway.opted_in:
        async for result in watch(gateway, ride_id, wait_s):
            if result is not None:
                gateway.delivered(ride_id, "long_poll")
                return ride_response(result)
        return pending(ride_id)
    result = await gateway.ride(ride_id, "lookup")
    if result is not None:
        return ride_response(result)
    if ride_id in gateway.opted_in:
        return pending(ride_id)
    raise HTTPException(404, f"no ride {ride_id!r}: never opted in, or forgotten")


@router.get("/v1/rides/{ride_id}/events", response_class=EventSourceResponse, responses={404: {}})
async def ride_events(ride_id: KnownRide, gateway: GatewayDep) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: ``result`` with the decided ride when it lands, else ``timeout``."""
    timeout_s = gateway.settings.gateway.events_timeout_s
    sent_pending = False
    async for result in watch(gateway, ride_id, timeout_s):
        if result is not None:
            gateway.delivered(ride_id, "sse")
            yield ServerSentEvent(
                event="result", data=ride_response(result).model_dump(mode="json")
            )
            return
        if not sent_pending:
            yield ServerSentEvent(event="pending", data={"ride_id": ride_id})
            sent_pending = True
    yield ServerSentEvent(event="timeout", data={"ride_id": ride_id, "waited_s": timeout_s})
