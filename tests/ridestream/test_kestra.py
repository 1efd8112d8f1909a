"""KestraClient against Kestra's REST contract (tests/kestra_contract.py), and optionally a real
server: set RIDESTREAM_TEST_KESTRA_URL (and _USERNAME/_PASSWORD) to run the last test against one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from ridestream.cli.app import app
from ridestream.kestra import (
    FlowNotFoundError,
    InvalidFlowError,
    KestraAuthError,
    KestraClient,
    KestraError,
    KestraUnreachableError,
)
from ridestream.settings import KestraSettings, get_settings
from tests.conftest import TRAINING_FLOW, free_port
from tests.kestra_contract import KestraContract


@pytest.fixture
def kestra() -> Iterator[KestraContract]:
    with KestraContract() as server:
        yield server


def settings_for(server: KestraContract, password: str | None = None) -> KestraSettings:
    return KestraSettings(
        url=server.url, username=server.username, password=SecretStr(password or server.password)
    )


def test_deploy_run_wait_and_read_the_logs_of_the_training_flow(kestra: KestraContract) -> None:
    with KestraClient(settings_for(kestra)) as client:
        source = TRAINING_FLOW.read_text()
        created = client.deploy_flow(source)
        assert (created["namespace"], created["id"], created["revision"]) == (
            "ridestream",
            "train-models",
            1,
        )
        assert client.deploy_flow(source)["revision"] == 2  # PUT updates the existing flow
        assert ("POST", "/api/v1/main/flows") in kestra.requests

        started = client.run(
            "ridestream",
            "train-models",
            {"month": "2023-01", "valid_month": "2023-02", "targets": "duration,cost"},
        )
        assert started.state == "CREATED"
        assert started.inputs["targets"] == "duration,cost"
        assert started.inputs["reason"] == "on demand"  # the flow's default
        finished = client.wait(started.id, timeout_s=10, poll_s=0.1)
        assert finished.state == "SUCCESS"
        assert finished.finished
        messages = [entry["message"] for entry in client.logs(started.id)]
        assert messages[0] == "training duration,cost on 2023-01, validating on 2023-02 (on demand)"
        assert '--train-month "data/green_tripdata_2023-01.parquet"' in messages[-1]
        assert '--targets "duration,cost"' in messages[-1]


def test_an_unknown_flow_is_not_found(kestra: KestraContract) -> None:
    with (
        KestraClient(settings_for(kestra)) as client,
        pytest.raises(FlowNotFoundError, match="Requested Flow is not found"),
    ):
        client.run("ridestream", "no-such-flow", {})


def test_an_invalid_flow_names_what_is_wrong(kestra: KestraContract) -> None:
    broken = "id: broken\nnamespace: ridestream\ntasks:\n  - id: t\n    type: io.kestra.plugin.nope.Task\n"
    with KestraClient(settings_for(kestra)) as client:
        with pytest.raises(InvalidFlowError) as raised:
            client.deploy_flow(broken)
        assert raised.value.violations == [
            {"path": "tasks[0].type", "message": "Invalid type: io.kestra.plugin.nope.Task"}
        ]
        with pytest.raises(InvalidFlowError, match="needs an id and a namespace"):
            client.deploy_flow("tasks: []\n")


def test_bad_credentials_are_reported_as_such(kestra: KestraContract) -> None:
    with (
        KestraClient(settings_for(kestra, password="Wrong1234")) as client,
        pytest.raises(KestraAuthError, match="401"),
    ):
        client.deploy_flow(TRAINING_FLOW.read_text())


def test_an_unreachable_server_is_reported_with_its_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        KestraClient(KestraSettings(url=url, timeout_s=2)) as client,
        pytest.raises(KestraUnreachableError, match=url),
    ):
        client.execution("x")


def test_waiting_gives_up_after_the_timeout(kestra: KestraContract) -> None:
    with KestraClient(settings_for(kestra)) as client:
        client.deploy_flow(TRAINING_FLOW.read_text())
        started = client.run("ridestream", "train-models", {})
        with pytest.raises(KestraError, match="still CREATED"):
            client.wait(started.id, timeout_s=0.0, poll_s=0.01)


def test_no_url_configured_is_a_clear_error() -> None:
    with pytest.raises(KestraError, match="RIDESTREAM_KESTRA__URL"):
        KestraClient(KestraSettings())


def test_the_cli_deploys_runs_and_follows(kestra: KestraContract) -> None:
    env = {"RIDESTREAM_KESTRA__URL": kestra.url, "RIDESTREAM_KESTRA__USERNAME": kestra.username,
           "RIDESTREAM_KESTRA__PASSWORD": kestra.password}  # fmt: skip
    runner = CliRunner()
    get_settings.cache_clear()
    try:
        deployed = runner.invoke(app, ["kestra", "deploy"], env=env)
        assert deployed.exit_code == 0, deployed.output
        assert "deployed ridestream.train-models revision 1" in deployed.output
        get_settings.cache_clear()
        ran = runner.invoke(
            app,
            ["kestra", "run", "--month", "2023-01", "--targets", "tip", "--timeout", "10"],
            env=env,
        )
        assert ran.exit_code == 0, ran.output
        assert ran.output.strip().endswith("SUCCESS")
        assert "training tip on 2023-01" in ran.output
    finally:
        get_settings.cache_clear()


@pytest.mark.skipif(
    not os.environ.get("RIDESTREAM_TEST_KESTRA_URL"), reason="no real Kestra server configured"
)
def test_against_a_real_kestra_server() -> None:
    settings = KestraSettings(
        url=os.environ["RIDESTREAM_TEST_KESTRA_URL"],
        username=os.environ.get("RIDESTREAM_TEST_KESTRA_USERNAME"),
        password=SecretStr(os.environ.get("RIDESTREAM_TEST_KESTRA_PASSWORD", "")),
    )
    with KestraClient(settings) as client:
        flow = client.deploy_flow(TRAINING_FLOW.read_text())
        execution = client.run(flow["namespace"], flow["id"], {"targets": "simple"})
        assert client.wait(execution.id, timeout_s=600).state == "SUCCESS"
