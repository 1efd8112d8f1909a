"""The gateway's HTTP contract through FastAPI's TestClient, with the real simple model from a
real registry and a real decision store: answers, validation, limits, keys, A/B, broker down."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from gateway.app import create_app
from gateway.schemas import EXAMPLE_RIDE
from ridestream.ml.features import RIDE_COLUMNS, build_features
from ridestream.ml.registry import CHALLENGER, CHAMPION, MODEL_NAMES, alias_version, make_challenger
from ridestream.ml.tracking import mlflow_client
from ridestream.settings import DecisionSettings, GatewaySettings, Settings
from tests.conftest import free_port
from training.train import TrainResult

RIDE = EXAMPLE_RIDE


@pytest.fixture
def gateway_settings(trained: tuple[Settings, list[TrainResult]], tmp_path: Path) -> Settings:
    """The session registry, a private store, and a Kafka address where nothing listens."""
    models = trained[0]
    return models.model_copy(
        update={
            "kafka_bootstrap": f"127.0.0.1:{free_port()}",
            "decisions": DecisionSettings(home=tmp_path),
            "gateway": GatewaySettings(delivery_timeout_s=1.0, readiness_cache_s=0),
        }
    )


@pytest.fixture
def client(gateway_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(gateway_settings)) as test_client:
        yield test_client


def expected_duration(settings: Settings, ride: dict[str, Any]) -> tuple[float, str]:
    """What the simple champion says of a ride, computed the batch way."""
    from ridestream.ml.models import load_version

    client = mlflow_client(settings.mlflow)
    name = MODEL_NAMES["simple"]
    version = alias_version(client, name, CHAMPION)
    assert version is not None
    model = load_version(client, name, version, CHAMPION, settings.models)
    row = {column: ride.get(column) for column in RIDE_COLUMNS}
    frame = pd.DataFrame([{**row, "pickup_time": datetime.fromisoformat(ride["pickup_time"])}])
    return float(model.predict(build_features(frame))[0]), version


def test_a_ride_is_answered_at_once_by_the_simple_champion(
    client: TestClient, gateway_settings: Settings
) -> None:
    response = client.post("/v1/predictions", json={**RIDE, "ride_id": "my-ride-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    value, version = expected_duration(gateway_settings, RIDE)
    assert body["ride_id"] == "my-ride-1"  # the client's id is kept: an idempotency key
    assert body["duration_minutes"] == pytest.approx(value, abs=1e-3)
    assert body["model"] == {"name": "ride-duration-simple", "version": version, "role": "champion"}
    assert "enhanced" not in body
    made = client.post("/v1/predictions", json=RIDE).json()["ride_id"]
    assert len(made) == 32  # one is made when the client sends none


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"pickup_zone": 999}, "pickup_zone", "less than or equal to 265"),
        ({"trip_distance": -1}, "trip_distance", "greater than or equal to 0"),
        ({"passenger_count": 40}, "passenger_count", "less than or equal to 9"),
        ({"trip_distance": "far"}, "trip_distance", "valid number"),
        ({"pickup_time": "yesterday"}, "pickup_time", "datetime"),
        ({"surge": 2}, "surge", "Extra inputs are not permitted"),
        ({"ride_id": "a b"}, "ride_id", "pattern"),
    ],
)
def test_invalid_rides_get_422_naming_the_field_and_the_reason(
    client: TestClient, change: dict[str, Any], field: str, reason: str
) -> None:
    response = client.post("/v1/predictions", json={**RIDE, **change})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", field]
    assert reason in error["msg"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"pickup_zone": 74, "dropoff_zone": 236, "trip_distance": NaN}', "trip_distance"),
        (b'{"pickup_zone": 74, "dropoff_zone": 236, "trip_distance": 1e999}', "trip_distance"),
        (b'{"pickup_zone": 74, "dropoff_zone": 236, "trip_distance": -Infinity}', "trip_distance"),
        (b'{"pickup_zone": NaN, "dropoff_zone": 236}', "pickup_zone"),
        (
            b'{"pickup_zone": 74, "dropoff_zone": 236, "passenger_count": Infinity}',
            "passenger_count",
        ),
    ],
)
def test_non_finite_numbers_get_422_naming_the_field(
    client: TestClient, body: bytes, field: str
) -> None:
    # JSON has no NaN or infinity, but parsers (ours included) read them: once a 500, because
    # the error echoing the value could not be encoded.
    response = client.post(
        "/v1/predictions", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert ["body", field] in [error["loc"] for error in response.json()["detail"]]


def test_rides_without_a_usable_distance_get_the_zone_pairs_typical_duration(
    client: TestClient,
) -> None:
    from ridestream.ml.tlc import load_month, month_file

    january, _ = load_month(month_file("2023-01"))
    pair = january[(january["pickup_zone"] == 74) & (january["dropoff_zone"] == 236)]
    typical = float(pair.loc[pair["labelled"], "duration_minutes"].median())
    known = client.post("/v1/predictions", json=RIDE).json()["duration_minutes"]
    for distance in (0.0, None, 5_000.0):
        ride = {**RIDE, "trip_distance": distance}
        answer = client.post("/v1/predictions", json=ride).json()["duration_minutes"]
        # Not the one-minute answer a zero once got: the pair's typical ride, give or take.
        assert typical / 2 <= answer <= typical * 2, (distance, answer, typical)
        assert abs(answer - known) < typical / 2
    no_distance = {k: v for k, v in RIDE.items() if k != "trip_distance"}
    assert client.post("/v1/predictions", json=no_distance).status_code == 200


def test_missing_fields_malformed_json_and_huge_bodies_are_refused(client: TestClient) -> None:
    missing = client.post("/v1/predictions", json={"pickup_zone": 1})
    assert missing.status_code == 422
    assert {e["loc"][-1] for e in missing.json()["detail"]} == {"dropoff_zone"}
    malformed = client.post(
        "/v1/predictions",
        content=b'{"pickup_zone": 1,',
        headers={"content-type": "application/json"},
    )
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["type"] == "json_invalid"
    not_utf8 = client.post(  # found by schemathesis: the error must not echo undecodable bytes
        "/v1/predictions", content=b"\x88", headers={"content-type": "application/json"}
    )
    assert not_utf8.status_code == 422
    assert not_utf8.json()["detail"][0]["type"] == "json_invalid"
    huge = client.post("/v1/predictions", json={**RIDE, "ride_id": "x" * 20_000})
    assert huge.status_code == 413


def test_with_the_broker_down_the_answer_still_comes_with_enhanced_unavailable(
    client: TestClient,
) -> None:
    response = client.post("/v1/predictions", json={**RIDE, "enhanced": True, "ride_id": "down-1"})
    assert response.status_code == 200
    body = response.json()
    assert body["duration_minutes"] > 0
    assert body["enhanced"]["status"] == "unavailable"
    assert "did not confirm the ride within 1.0 s" in body["enhanced"]["reason"]
    assert client.get("/v1/rides/down-1").status_code == 404  # never made it onto the stream
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["kafka"] == "unreachable"
    assert client.get("/healthz").json() == {"status": "ok"}


def test_unknown_rides_are_404(client: TestClient) -> None:
    response = client.get("/v1/rides/nobody")
    assert response.status_code == 404
    assert "nobody" in response.json()["detail"]
    assert client.get("/v1/rides/nobody/events").status_code == 404


def test_an_api_key_guards_opted_in_requests_only(gateway_settings: Settings) -> None:
    settings = gateway_settings.model_copy(
        update={
            "gateway": gateway_settings.gateway.model_copy(
                update={"api_key": SecretStr("s3cret-key")}
            )
        }
    )
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/predictions", json=RIDE).status_code == 200
        refused = client.post("/v1/predictions", json={**RIDE, "enhanced": True})
        assert refused.status_code == 401
        wrong = client.post(
            "/v1/predictions", json={**RIDE, "enhanced": True}, headers={"X-API-Key": "guess"}
        )
        assert wrong.status_code == 401
        allowed = client.post(
            "/v1/predictions", json={**RIDE, "enhanced": True}, headers={"X-API-Key": "s3cret-key"}
        )
        assert allowed.status_code == 200


def test_a_b_split_is_sticky_per_client_and_counted_per_version(
    gateway_settings: Settings,
) -> None:
    client_ = mlflow_client(gateway_settings.mlflow)
    name = MODEL_NAMES["simple"]
    champion = alias_version(client_, name, CHAMPION)
    assert champion is not None
    source = client_.get_model_version(name, champion)
    challenger = client_.create_model_version(name, source.source, source.run_id).version
    make_challenger(client_, name, str(challenger))
    settings = gateway_settings.model_copy(
        update={"gateway": gateway_settings.gateway.model_copy(update={"challenger_share": 0.5})}
    )
    try:
        with TestClient(create_app(settings)) as client:
            versions = {}
            for i in range(60):
                answers = {
                    client.post("/v1/predictions", json={**RIDE, "client_id": f"c{i}"}).json()[
                        "model"
                    ]["version"]
                    for _ in range(3)
                }
                assert len(answers) == 1  # sticky
                versions[f"c{i}"] = answers.pop()
            shares = Counter(versions.values())
            assert set(shares) == {champion, str(challenger)}
            assert 15 <= shares[str(challenger)] <= 45
            scraped = client.get("/metrics").text
            line = (
                "ridestream_gateway_predictions_total"
                f'{{model_version="{challenger}",role="challenger"}} '
                f"{3.0 * shares[str(challenger)]}"
            )
            assert line in scraped
            assert (
                'ridestream_gateway_requests_total{method="POST",route="/v1/predictions",status="200"}'
                in scraped
            )
    finally:
        client_.delete_registered_model_alias(name, CHALLENGER)


def test_the_openapi_schema_documents_the_api(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/v1/predictions", "/v1/rides/{ride_id}", "/v1/rides/{ride_id}/events"} <= set(
        schema["paths"]
    )
    assert "/metrics" not in schema["paths"]
    assert client.get("/docs").status_code == 200
