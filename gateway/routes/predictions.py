"""``POST /v1/predictions``: the ride's duration now; with ``enhanced``, the ride on the stream."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, Response

from gateway.deps import API_KEY_HEADER, api_key_accepted, state_of
from gateway.predictions import enhance, predict_duration
from gateway.schemas import RIDE_REQUEST_BODY, ModelInfo, PredictionResponse, parse_ride
from gateway.state import CITY

router = APIRouter()


# The route reads its body and headers itself (see gateway/deps.py); this tells OpenAPI, and so
# clients and schemathesis, what it reads.
OPENAPI = {
    **RIDE_REQUEST_BODY,
    "parameters": [
        {
            "name": API_KEY_HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Needed for enhanced predictions when the gateway has an API key.",
        }
    ],
}


@router.post("/v1/predictions", response_model=PredictionResponse, openapi_extra=OPENAPI)
async def predict(request: Request) -> Response:
    """The ride's duration from the simple model now; with ``enhanced``, also on the stream."""
    ride = parse_ride(await request.body())
    gateway = state_of(request)
    if ride.enhanced and not api_key_accepted(gateway, request.headers.get(API_KEY_HEADER)):
        raise HTTPException(401, "enhanced predictions need a valid X-API-Key header")
    ride_id = ride.ride_id or uuid.uuid4().hex
    pickup = ride.pickup_time or datetime.now(CITY).replace(tzinfo=None, microsecond=0)
    model = gateway.model_for(ride.client_id or ride_id)
    duration = predict_duration(model, ride, pickup)
    gateway.metrics.predictions.labels(model.role, model.version).inc()
    answer = PredictionResponse(
        ride_id=ride_id,
        duration_minutes=round(duration, 3),
        model=ModelInfo(name=model.name, version=model.version, role=model.role),  # type: ignore[arg-type]
    )
    if ride.enhanced:
        answer.enhanced = await enhance(gateway, ride, ride_id, pickup, model, duration)
    # Serialized here, once, in pydantic's Rust: the answer is valid by construction, and
    # FastAPI's response-model path would validate it again and encode it through Python.
    # (response_model stays on the route for the OpenAPI schema.)
    return Response(answer.model_dump_json(exclude_none=True), media_type="application/json")
