"""The gateway as a real uvicorn server on loopback with a real broker, the predictors and the
decision service: an opted-in ride's enhanced result through GET and through SSE; and
schemathesis against the published OpenAPI schema (no request makes it answer 5xx)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode

from consumers.predictor import Predictor
from decision_service.service import DecisionService
from gateway.app import create_app
from ridestream.contracts.events import TARGETS
from ridestream.settings import DecisionSettings, GatewaySettings, Settings
from tests.conftest import free_port
from tests.helpers import Running
from training.train import TrainResult

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

RIDE = {"pickup_zone": 74, "dropoff_zone": 236, "trip_distance": 2.4, "payment_type": 1}


@pytest.fixture
def stack_settings(
    kafka_settings: Settings, trained: tuple[Settings, list[TrainResult]], tmp_path: Path
) -> Settings:
    """This test's topics, the session registry, a private store, short SSE waits."""
    models = trained[0]
    return kafka_settings.model_copy(
        update={
            "mlflow": models.mlflow,
            "models": models.models,
            "decisions": DecisionSettings(home=tmp_path, join_window_s=30.0),
            "gateway": GatewaySettings(port=free_port(), events_timeout_s=20.0, events_poll_s=0.1),
        }
    )


@pytest.fixture
def server(stack_settings: Settings) -> Iterator[str]:
    """The gateway on uvicorn, on 127.0.0.1 and a free port, in a thread."""
    port = stack_settings.gateway.port
    config = uvicorn.Config(
        create_app(stack_settings), host="127.0.0.1", port=port, log_level="warning"
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uvicorn_server.started:
        assert thread.is_alive(), "the gateway did not start"
        assert time.monotonic() < deadline, "the gateway did not start in time"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uvicorn_server.should_exit = True
    thread.join(timeout=30)


def store_reads(http: httpx.Client, why: str) -> float:
    """The gateway's own count of decision-store reads, from its /metrics."""
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(f'ridestream_gateway_store_reads_total{{why="{why}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_an_opted_in_ride_comes_back_enhanced_through_get_sse_and_long_poll(
    stack_settings: Settings, server: str
) -> None:
    running = [Running(Predictor(stack_settings, target)) for target in TARGETS]
    running.append(Running(DecisionService(stack_settings)))
    try:
        with httpx.Client(base_url=server, timeout=30) as http:
            ready_deadline = time.monotonic() + 30
            while http.get("/readyz").status_code != 200:
                assert time.monotonic() < ready_deadline, http.get("/readyz").json()
                time.sleep(0.2)
            asked = time.monotonic()
            answer = http.post(
                "/v1/predictions", json={**RIDE, "ride_id": "e2e-1", "enhanced": True}
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["enhanced"] == {
                "status": "pending",
                "href": "/v1/rides/e2e-1",
                "events": "/v1/rides/e2e-1/events",
            }
            events = []
            with http.stream("GET", body["enhanced"]["events"]) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                name = None
                for line in stream.iter_lines():
                    if line.startswith("event: "):
                        name = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        events.append((name, json.loads(line.removeprefix("data: "))))
                        if name in ("result", "timeout"):
                            break
            waited = time.monotonic() - asked
            assert [name for name, _ in events][-1] == "result", events
            result = events[-1][1]
            assert result["status"] == "decided"
            assert {p["target"] for p in result["predictions"]} == set(TARGETS)
            assert result["decision"]["quote"] > 0
            assert waited < 15, f"the enhanced result took {waited:.1f} s"

            # The stream read the store when it opened and when its decision arrived (and once
            # more if the follower was assigned meanwhile), never in between.
            assert store_reads(http, "wait") <= 3

            second = {**RIDE, "ride_id": "e2e-2", "enhanced": True}
            assert http.post("/v1/predictions", json=second).status_code == 200
            polled = http.get("/v1/rides/e2e-2", params={"wait_s": 15}).json()
            assert polled["status"] == "decided"
            assert polled["decision"]["quote"] > 0
            assert store_reads(http, "wait") <= 6

            fetched = http.get(body["enhanced"]["href"]).json()
            assert fetched["decision"] == result["decision"]
            # The gateway's own answer is on the stream too, for the online evaluation.
            deadline = time.monotonic() + 10
            while not any(
                p["model_name"] == "ride-duration-simple" for p in fetched["predictions"]
            ):
                assert time.monotonic() < deadline, fetched["predictions"]
                time.sleep(0.2)
                fetched = http.get(body["enhanced"]["href"]).json()
            (simple,) = [
                p for p in fetched["predictions"] if p["model_name"] == "ride-duration-simple"
            ]
            assert simple["value"] == pytest.approx(body["duration_minutes"], abs=1e-3)
            assert simple["model_version"] == body["model"]["version"]
    finally:
        for component in running:
            component.close()


def test_no_request_makes_the_gateway_fail(server: str) -> None:
    """Every operation of the published OpenAPI schema, with schemathesis-generated requests
    (valid and not): never a 5xx. (Driven through Hypothesis directly: schemathesis's pytest
    plugin does not load fixtures under pytest 9.)"""
    api = schemathesis.openapi.from_url(f"{server}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/predictions", "/v1/rides/{ride_id}"}
    statuses: dict[GenerationMode, list[int]] = {mode: [] for mode in GenerationMode}
    for operation, mode in itertools.product(operations, GenerationMode):
        if mode is GenerationMode.NEGATIVE and not operation.get_request_payload_content_types():
            continue  # nothing in it can break the schema (a bodiless GET's path is any string)
        seen = statuses[mode]

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis_settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck)
        )
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(base_url=server, timeout=30)
            seen.append(response.status_code)  # noqa: B023 - called before the loop moves on
            assert response.status_code < 500, (case.method, case.path, response.text)

        no_server_error()
    # Requests really went out: valid ones answered, and requests that break the schema refused.
    assert len(statuses[GenerationMode.POSITIVE]) >= 2 * len(operations)
    assert 200 in statuses[GenerationMode.POSITIVE]
    assert 422 in statuses[GenerationMode.NEGATIVE]
