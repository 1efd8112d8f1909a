"""What ``POST /v1/predictions`` does: the simple model's answer, and the ride on the stream."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import numpy as np

from gateway.schemas import Enhanced, RideRequest
from gateway.state import Gateway
from ridestream.contracts.events import Prediction, RideStarted
from ridestream.exceptions import RidestreamError
from ridestream.ml.features import build_features
from ridestream.ml.models import LoadedModel


def predict_duration(model: LoadedModel, ride: RideRequest, pickup: datetime) -> float:
    """The simple model on the ride's features (the one feature function every model uses).

    The ride goes in as one-element arrays, not a one-row DataFrame: building a frame costs more
    than the model (``bench/gateway.py`` times the stages)."""
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
