"""``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.deps import GatewayDep

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {}})
async def readyz(gateway: GatewayDep) -> JSONResponse:
    """Ready: the simple model is loaded, the Kafka producer can reach the cluster and (unless
    turned off) the decisions are followed, so a waiting rider is woken."""
    model = gateway.champion.current
    broker = gateway.publisher is not None and await asyncio.to_thread(gateway.broker_reachable)
    follow = gateway.settings.gateway.follow_decisions
    body = {
        "model": {"name": model.name, "version": model.version} if model else None,
        "kafka": "reachable" if broker else gateway.publisher_error or "unreachable",
        "decisions": "following" if gateway.following else "polling the store",
    }
    ready = model is not None and broker and (gateway.following or not follow)
    return JSONResponse({"ready": ready, **body}, status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(gateway: GatewayDep) -> Response:
    """The gateway's Prometheus metrics."""
    gateway.metrics.waiting.set(len(gateway.waiting))
    gateway.metrics.model_in_use(
        gateway.champion.current, gateway.challenger.current if gateway.challenger else None
    )
    return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)
