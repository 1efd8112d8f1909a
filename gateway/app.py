"""The gateway: a thin FastAPI service in front of the stream.

``POST /v1/predictions`` answers at once with the ``ride-duration-simple`` champion (or, for a
configured share of clients, sticky by a hash of the client's id, its challenger). With
``"enhanced": true`` the ride is also published to ``rides.started`` through the asyncio producer
and the answer waits, bounded, for the broker's acknowledgement: ``enhanced.status`` is then
``pending`` with the link to follow, or ``unavailable`` with the reason. The synchronous answer
never depends on Kafka. ``GET /v1/rides/{ride_id}`` reads the enhanced result (predictions per
target and the decision) from the decision store; ``…/events`` pushes it as Server-Sent Events
when it lands. ``/healthz``, ``/readyz``, ``/metrics`` and the OpenAPI docs complete it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
from cachetools import TTLCache
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, NaiveDatetime, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import GatewayMetrics
from producers.publisher import AsyncRidePublisher
from ridestream.contracts.events import (
    MAX_PASSENGERS,
    ZONE_MAX,
    ZONE_MIN,
    Prediction,
    RideStarted,
)
from ridestream.exceptions import RidestreamError
from ridestream.kafka.clients import cluster_metadata, make_admin
from ridestream.ml.features import build_features
from ridestream.ml.models import AliasedModel, LoadedModel
from ridestream.ml.registry import CHALLENGER, CHAMPION, MODEL_NAMES
from ridestream.ml.tracking import mlflow_client
from ridestream.settings import Settings
from ridestream.store.decisions import DecisionStore
from ridestream.store.records import RideResult

logger = logging.getLogger(__name__)

SIMPLE_MODEL = MODEL_NAMES["simple"]
CITY = ZoneInfo("America/New_York")  # pickup times are the city's wall clock, as in TLC data
OPTED_IN_MEMORY = 100_000  # rides accepted for enhancement, remembered for an hour


# -- the API's models ---------------------------------------------------------------------------
# A short ride (East Harlem North → Upper East Side North): the OpenAPI example, and what the
# tests and the gateway benchmark send.
EXAMPLE_RIDE: dict[str, Any] = {
    "pickup_zone": 74,
    "dropoff_zone": 236,
    "trip_distance": 2.4,
    "pickup_time": "2023-02-01T08:30:00",
    "passenger_count": 1,
    "payment_type": 1,
}


class RideRequest(BaseModel):
    """A ride as the app knows it at pickup."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{**EXAMPLE_RIDE, "enhanced": True}]},
    )

    ride_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Your id for the ride (an idempotency key); one is made when absent.",
    )
    client_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="Keeps a client on one model."
    )
    pickup_time: NaiveDatetime | None = Field(
        default=None, description="The city's wall-clock pickup time; now when absent."
    )
    pickup_zone: int = Field(ge=ZONE_MIN, le=ZONE_MAX, description="TLC LocationID")
    dropoff_zone: int = Field(ge=ZONE_MIN, le=ZONE_MAX, description="TLC LocationID")
    trip_distance: float | None = Field(
        default=None,
        ge=0.0,
        allow_inf_nan=False,
        description="Estimated miles. Absent, null, 0 or implausible (over 100) means unknown: "
        "the models then answer from the zone pair's typical distance.",
    )
    passenger_count: int | None = Field(default=None, ge=0, le=MAX_PASSENGERS)
    vendor_id: int | None = Field(default=None, ge=1, le=99)
    rate_code: int | None = Field(default=None, ge=1, le=99)
    payment_type: int | None = Field(default=None, ge=0, le=6)
    trip_type: int | None = Field(default=None, ge=1, le=2)
    enhanced: bool = Field(default=False, description="Also put the ride on the stream.")


def parse_ride(body: bytes) -> RideRequest:
    """The request body as a ride, validated in one pass of pydantic's Rust JSON parser.

    FastAPI's own body parameter decodes the JSON in Python and validates the dict through its
    dependency machinery: reading the body here took a request from 320 to 276 µs in process (an
    ASGI loop), and the server's CPU per request under wrk from 0.565 to 0.483 ms. Errors keep
    FastAPI's shape: 422, ``detail`` with ``loc`` ``["body", field]``.
    """
    try:
        return RideRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = [_body_error(error) for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def _body_error(error: Any) -> dict[str, Any]:
    """A pydantic error as FastAPI words a body's: under ``body``, and never echoing raw bytes (a
    body that is not JSON, or not even UTF-8, would break the error's own JSON encoding)."""
    located = {**error, "loc": ("body", *error["loc"])}
    if isinstance(located.get("input"), bytes):
        del located["input"]
    elif "input" in located:
        located["input"] = _finite(located["input"])
    return located


def _finite(value: Any) -> Any:
    """A value with every NaN or infinity (JSON has none: ``NaN``, ``1e999``) as its name, so
    the 422 that refuses it can be encoded instead of failing as a 500."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


# The route reads its body itself (parse_ride); this tells OpenAPI, and so clients and
# schemathesis, what the body is.
RIDE_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": RideRequest.model_json_schema()}},
    }
}


class ModelInfo(BaseModel):
    name: str
    version: str
    role: Literal["champion", "challenger"]


class Enhanced(BaseModel):
    status: Literal["pending", "unavailable"]
    href: str | None = None
    events: str | None = None
    reason: str | None = None


class PredictionResponse(BaseModel):
    ride_id: str
    duration_minutes: float
    model: ModelInfo
    enhanced: Enhanced | None = None


class TargetPrediction(BaseModel):
    target: str
    value: float
    model_name: str
    model_version: str
    role: str


class RideResponse(BaseModel):
    ride_id: str
    status: Literal["pending", "decided"]
    predictions: list[TargetPrediction]
    decision: dict[str, Any] | None
    actual: dict[str, float] | None


def ride_response(result: RideResult) -> RideResponse:
    """The API's view of what the store holds for a ride."""
    return RideResponse(
        ride_id=result.ride_id,
        status=result.status,  # type: ignore[arg-type]
        predictions=[
            TargetPrediction(
                target=p.target,
                value=p.value,
                model_name=p.model_name,
                model_version=p.model_version,
                role=p.role,
            )
            for p in result.predictions
        ],
        decision=result.decision.model_dump(mode="json") if result.decision else None,
        actual=result.actual,
    )


# -- the parts the routes use -------------------------------------------------------------------
def bucket(key: str) -> float:
    """A stable number in [0, 1) for a client: the same client always lands on the same model."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class Gateway:
    """Everything the routes share: models, publisher, store, metrics."""

    settings: Settings
    champion: AliasedModel
    challenger: AliasedModel | None
    store: DecisionStore
    metrics: GatewayMetrics
    publisher: AsyncRidePublisher | None = None
    publisher_error: str | None = None
    _ready_at: float = 0.0
    _broker_ok: bool = False
    _admin: Any = None

    def __post_init__(self) -> None:
        self.opted_in: TTLCache[str, float] = TTLCache(maxsize=OPTED_IN_MEMORY, ttl=3600)

    def model_for(self, client: str) -> LoadedModel:
        champion = self.champion.current
        assert champion is not None, "the champion handle always holds a model"
        challenger = self.challenger.current if self.challenger else None
        share = self.settings.gateway.challenger_share
        if challenger is not None and share > 0 and bucket(client) < share:
            return challenger
        return champion

    def broker_reachable(self) -> bool:
        """Whether the cluster answers a metadata request (cached for a few seconds)."""
        now = time.monotonic()
        if now - self._ready_at > self.settings.gateway.readiness_cache_s:
            if self._admin is None:  # one client for every check: each new one connects anew
                self._admin = make_admin(self.settings)
            try:
                cluster_metadata(self._admin, timeout_s=2.0)
                self._broker_ok = True
            except RidestreamError:
                self._broker_ok = False
            self._ready_at = now
        return self._broker_ok


def make_gateway(settings: Settings) -> Gateway:
    """Load the simple model's aliases and open the store and the publisher."""
    client = mlflow_client(settings.mlflow)
    champion = AliasedModel(client, SIMPLE_MODEL, CHAMPION, settings.models)
    challenger = AliasedModel(client, SIMPLE_MODEL, CHALLENGER, settings.models, required=False)
    gateway = Gateway(
        settings=settings,
        champion=champion,
        challenger=challenger,
        store=DecisionStore(settings.decisions.resolved_store_url),
        metrics=GatewayMetrics(),
    )
    try:
        # The answer to an opted-in request waits this long, so a message may not outlive it:
        # "unavailable" then means the ride will not arrive later after all.
        timeout_ms = int(settings.gateway.delivery_timeout_s * 1000)
        gateway.publisher = AsyncRidePublisher(
            settings, **{"message.timeout.ms": timeout_ms, "linger.ms": 1}
        )
    except Exception as exc:  # a bad Kafka config must not take the synchronous path down
        logger.exception("no Kafka producer; enhanced predictions are unavailable")
        gateway.publisher_error = f"no Kafka producer: {exc}"
    return gateway


# -- the app --------------------------------------------------------------------------------------
def create_app(settings: Settings, gateway: Gateway | None = None) -> FastAPI:
    """The gateway's ASGI app (``gateway`` given by tests; otherwise made at startup)."""
    state: dict[str, Gateway] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gw = gateway if gateway is not None else await asyncio.to_thread(make_gateway, settings)
        state["gateway"] = gw
        gw.champion.start_polling()
        if gw.challenger is not None:
            gw.challenger.start_polling()
        try:
            yield
        finally:
            gw.champion.stop()
            if gw.challenger is not None:
                gw.challenger.stop()
            if gw.publisher is not None:
                await asyncio.to_thread(gw.publisher.close, 5.0)
            gw.store.close()

    app = FastAPI(
        title="ridestream gateway",
        version="1",
        summary="Ride duration at once; enhanced duration, cost, tip and decision on opt-in.",
        lifespan=lifespan,
        max_body_size=settings.gateway.max_body_bytes,
    )

    def current() -> Gateway:
        return state["gateway"]

    app.add_middleware(RequestMetrics, gateway=lambda: state.get("gateway"))

    @app.post(
        "/v1/predictions",
        response_model=PredictionResponse,
        openapi_extra=RIDE_REQUEST_BODY,
    )
    async def predict(
        request: Request, x_api_key: Annotated[str | None, Header()] = None
    ) -> Response:
        """The ride's duration from the simple model now; with ``enhanced``, also on the stream."""
        ride = parse_ride(await request.body())
        gw = current()
        expected_key = gw.settings.gateway.api_key
        if (
            ride.enhanced
            and expected_key is not None
            and not (
                x_api_key and secrets.compare_digest(x_api_key, expected_key.get_secret_value())
            )
        ):
            raise HTTPException(401, "enhanced predictions need a valid X-API-Key header")
        ride_id = ride.ride_id or uuid.uuid4().hex
        pickup = ride.pickup_time or datetime.now(CITY).replace(tzinfo=None, microsecond=0)
        model = gw.model_for(ride.client_id or ride_id)
        duration = predict_duration(model, ride, pickup)
        gw.metrics.predictions.labels(model.role, model.version).inc()
        answer = PredictionResponse(
            ride_id=ride_id,
            duration_minutes=round(duration, 3),
            model=ModelInfo(name=model.name, version=model.version, role=model.role),  # type: ignore[arg-type]
        )
        if ride.enhanced:
            answer.enhanced = await enhance(gw, ride, ride_id, pickup, model, duration)
        # Serialized here, once, in pydantic's Rust: the answer is valid by construction, and
        # FastAPI's response-model path would validate it again and encode it through Python.
        # (response_model stays on the route for the OpenAPI schema.)
        return Response(answer.model_dump_json(exclude_none=True), media_type="application/json")

    @app.get("/v1/rides/{ride_id}", response_model=RideResponse, responses={404: {}})
    async def ride_result(ride_id: str) -> RideResponse:
        """Enhanced predictions per target and the decision; ``pending`` while on the way."""
        gw = current()
        result = await asyncio.to_thread(gw.store.ride, ride_id)
        if result is not None:
            return ride_response(result)
        if ride_id in gw.opted_in:
            return RideResponse(
                ride_id=ride_id, status="pending", predictions=[], decision=None, actual=None
            )
        raise HTTPException(404, f"no ride {ride_id!r}: never opted in, or forgotten")

    async def known_ride(ride_id: str) -> str:
        # A dependency: it answers 404 before the event stream (and its 200) begins.
        gw = current()
        if ride_id not in gw.opted_in and await asyncio.to_thread(gw.store.ride, ride_id) is None:
            raise HTTPException(404, f"no ride {ride_id!r}: never opted in, or forgotten")
        return ride_id

    @app.get("/v1/rides/{ride_id}/events", response_class=EventSourceResponse, responses={404: {}})
    async def ride_events(
        # Not Annotated[...]: with postponed annotations a closure's dependency cannot resolve.
        ride_id: str = Depends(known_ride),
    ) -> AsyncIterator[ServerSentEvent]:
        """Server-Sent Events: ``result`` with the decided ride when it lands, else ``timeout``."""
        gw = current()
        config = gw.settings.gateway
        deadline = time.monotonic() + config.events_timeout_s
        sent_pending = False
        while time.monotonic() < deadline:
            result = await asyncio.to_thread(gw.store.ride, ride_id)
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

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {}})
    async def readyz() -> JSONResponse:
        """Ready: the simple model is loaded and the Kafka producer can reach the cluster."""
        gw = current()
        model = gw.champion.current
        broker = gw.publisher is not None and await asyncio.to_thread(gw.broker_reachable)
        body = {
            "model": {"name": model.name, "version": model.version} if model else None,
            "kafka": "reachable" if broker else gw.publisher_error or "unreachable",
        }
        ready = model is not None and broker
        return JSONResponse({"ready": ready, **body}, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        gw = current()
        gw.metrics.model_in_use(
            gw.champion.current, gw.challenger.current if gw.challenger else None
        )
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


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


def predict_duration(model: LoadedModel, ride: RideRequest, pickup: datetime) -> float:
    """The simple model on the ride's features (the one feature function every model uses).

    The ride goes in as one-element arrays, not a one-row DataFrame: building a frame costs more
    than the model (bench/gateway.py measured ~2.5 ms against ~0.7 ms per request)."""
    columns: dict[str, np.ndarray] = {
        "pickup_time": np.array([pickup], dtype="datetime64[s]"),
        **{
            name: np.array([np.nan if value is None else value], dtype=np.float64)
            for name, value in (
                ("pickup_zone", ride.pickup_zone),
                ("dropoff_zone", ride.dropoff_zone),
                ("trip_distance", ride.trip_distance),
                ("passenger_count", ride.passenger_count),
                ("vendor_id", ride.vendor_id),
                ("rate_code", ride.rate_code),
                ("payment_type", ride.payment_type),
                ("trip_type", ride.trip_type),
            )
        },
    }
    return float(model.predict(build_features(columns))[0])


async def enhance(
    gw: Gateway,
    ride: RideRequest,
    ride_id: str,
    pickup: datetime,
    model: LoadedModel,
    duration: float,
) -> Enhanced:
    """Publish the ride for the stream and wait (bounded) for the broker's acknowledgement.

    The simple model's answer goes along as a Prediction, so the decision service evaluates the
    gateway's model versions (the A/B split) against the ride's ground truth too.
    """
    if gw.publisher is None:
        gw.metrics.enhanced.labels("unavailable").inc()
        return Enhanced(status="unavailable", reason=gw.publisher_error)
    event = RideStarted(
        ride_id=ride_id,
        source="gateway",
        enhanced=True,
        pickup_time=pickup,
        trip_distance=ride.trip_distance or 0.0,  # the contract's "no estimate"
        **ride.model_dump(
            include={
                "pickup_zone",
                "dropoff_zone",
                "passenger_count",
                "vendor_id",
                "rate_code",
                "payment_type",
                "trip_type",
            }
        ),
    )
    answered = Prediction(
        ride_id=ride_id,
        target="duration",
        value=duration,
        model_name=model.name,
        model_version=model.version,
        role=model.role,  # type: ignore[arg-type]
        source_event_id=event.event_id,
        source_event_time=event.event_time,
        pickup_time=pickup,
    )
    timeout = gw.settings.gateway.delivery_timeout_s
    publisher = gw.publisher
    try:
        await asyncio.wait_for(
            asyncio.gather(
                publisher.publish_started(event), publisher.publish_prediction(answered)
            ),
            timeout,
        )
    except TimeoutError:
        gw.metrics.enhanced.labels("unavailable").inc()
        return Enhanced(
            status="unavailable", reason=f"the stream did not confirm the ride within {timeout} s"
        )
    except RidestreamError as exc:
        gw.metrics.enhanced.labels("unavailable").inc()
        return Enhanced(status="unavailable", reason=f"the stream refused the ride: {exc}")
    gw.opted_in[ride_id] = time.time()
    gw.metrics.enhanced.labels("pending").inc()
    return Enhanced(
        status="pending", href=f"/v1/rides/{ride_id}", events=f"/v1/rides/{ride_id}/events"
    )
