from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ridestream.cli.app import app
from ridestream.kafka.clients import make_admin
from ridestream.kafka.topics import delete_topics
from ridestream.ml.tlc import month_file
from ridestream.settings import get_settings
from tests.conftest import make_settings


@pytest.fixture
def cli(bootstrap: str) -> Iterator[tuple[CliRunner, dict[str, str]]]:
    """A CLI runner whose environment points at the session broker with fresh topic names."""
    prefix = f"cli{uuid.uuid4().hex[:8]}."
    env = {
        "RIDESTREAM_KAFKA_BOOTSTRAP": bootstrap,
        "RIDESTREAM_TOPICS__PREFIX": prefix,
        "RIDESTREAM_TOPICS__PARTITIONS": "2",
    }
    get_settings.cache_clear()
    yield CliRunner(), env
    get_settings.cache_clear()
    settings = make_settings(bootstrap, prefix=prefix)
    delete_topics(make_admin(settings), list(settings.topics.names().values()))


def invoke(cli: tuple[CliRunner, dict[str, str]], *args: str) -> Result:
    runner, env = cli
    get_settings.cache_clear()
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


@pytest.mark.kafka
def test_create_replay_list_and_tail(cli: tuple[CliRunner, dict[str, str]]) -> None:
    prefix = cli[1]["RIDESTREAM_TOPICS__PREFIX"]
    created = invoke(cli, "topics", "create")
    assert created.exit_code == 0
    assert f"{prefix}rides.started: created" in created.output
    assert f"{prefix}rides.dlq: created" in created.output
    assert "rides.started: exists" in invoke(cli, "topics", "create").output

    replayed = invoke(
        cli,
        "replay",
        "--input",
        str(month_file("2023-02")),
        "--rate",
        "0",
        "--limit",
        "50",
        "--no-progress",
    )
    assert replayed.exit_code == 0, replayed.output
    assert "published 50 RideStarted and 50 RideCompleted" in replayed.output

    listed = invoke(cli, "topics", "list").output
    assert f"{prefix}rides.started" in listed
    assert "partitions=2" in listed
    assert "messages=50" in listed

    tailed = invoke(cli, "tail", "started", "--limit", "3", "--idle-timeout", "5")
    lines = [json.loads(line) for line in tailed.output.splitlines()]
    assert len(lines) == 3
    assert all(line["key"] == line["value"]["ride_id"] for line in lines)
    assert all(line["value"]["ride_id"].startswith("2023-02-") for line in lines)


def test_settings_are_shown_with_secrets_masked() -> None:
    get_settings.cache_clear()
    result = CliRunner().invoke(
        app,
        ["settings"],
        env={"RIDESTREAM_KAFKA_CONFIG": '{"sasl.password": "hunter2", "sasl.username": "svc"}'},
    )
    get_settings.cache_clear()
    assert result.exit_code == 0
    assert "hunter2" not in result.output
    shown = json.loads(result.output)
    assert shown["kafka_config"] == {"sasl.password": "***", "sasl.username": "svc"}


def test_status_of_a_broker_that_is_not_running_exits_1(tmp_path: Path) -> None:
    get_settings.cache_clear()
    result = CliRunner().invoke(
        app,
        ["kafka", "status"],
        env={"RIDESTREAM_LOCAL_KAFKA__HOME": str(tmp_path), "RIDESTREAM_LOCAL_KAFKA__PORT": "1"},
    )
    get_settings.cache_clear()
    assert result.exit_code == 1
    assert "running=False" in result.output
    assert "answers=False" in result.output


def test_status_of_a_cluster_lists_every_node(tmp_path: Path) -> None:
    get_settings.cache_clear()
    result = CliRunner().invoke(
        app,
        ["kafka", "status", "--brokers", "3"],
        env={"RIDESTREAM_LOCAL_KAFKA__HOME": str(tmp_path), "RIDESTREAM_LOCAL_KAFKA__PORT": "2"},
    )
    get_settings.cache_clear()
    assert result.exit_code == 1
    assert "bootstrap=127.0.0.1:2,127.0.0.1:4,127.0.0.1:6" in result.output
    for node, port in ((1, 2), (2, 4), (3, 6)):
        assert f"node {node}: 127.0.0.1:{port} running=False" in result.output


def test_the_console_script_turns_a_known_error_into_one_line_and_exit_1(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {
            **os.environ,
            "RIDESTREAM_LOCAL_KAFKA__PORT": str(port),
            "RIDESTREAM_LOCAL_KAFKA__HOME": str(tmp_path),
        }
        ridestream = Path(sys.executable).with_name("ridestream")
        result = subprocess.run(
            [str(ridestream), "kafka", "start"], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    assert f"error: port {port} on 127.0.0.1 is taken" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_train_list_promote_and_rollback_from_the_command_line(tmp_path: Path) -> None:
    env = {"RIDESTREAM_MLFLOW__HOME": str(tmp_path / "mlflow")}
    runner = CliRunner()

    def run(*args: str) -> Result:
        get_settings.cache_clear()
        result = runner.invoke(app, list(args), env=env, catch_exceptions=False)
        get_settings.cache_clear()
        return result

    first = run("train", "--targets", "simple", "--sample", "2000", "--no-progress", "--json")
    assert first.exit_code == 0, first.output
    [result] = json.loads(first.stdout)
    assert (result["model_name"], result["version"], result["role"]) == (
        "ride-duration-simple",
        "1",
        "champion",
    )

    second = run("train", "--targets", "simple", "--sample", "2000", "--no-progress")
    assert "ride-duration-simple" in second.output
    assert "RMSE" in second.output
    listed = run("models", "list").output
    assert "ride-duration-simple   v2" in listed
    assert "ride-duration-simple   v1" in listed

    assert (
        "ride-duration-simple@champion = v2 (was v1)"
        in run("models", "promote", "ride-duration-simple", "2").output
    )
    assert (
        "ride-duration-simple@champion = v1 (rolled back from v2)"
        in run("models", "rollback", "ride-duration-simple").output
    )
    # Only the simple model has a champion: the demo would train the others.
    check = run("models", "check")
    assert check.exit_code == 1
    assert "ride-duration, ride-cost, ride-tip" in check.output
    assert "ride-duration-simple" not in check.output.split(":", 1)[1]

    output = tmp_path / "backtest.json"
    backtested = run(
        "train", "--backtest", "--targets", "simple", "--sample", "2000", "--no-progress",
        "--output", str(output),
    )  # fmt: skip
    assert backtested.exit_code == 0, backtested.output
    assert "| →Feb 01, test Feb 01–Feb 28 | month | simple |" in backtested.output
    assert {row["kind"] for row in json.loads(output.read_text())} == {"next", "month", "stale"}
    assert "ride-duration-simple   v3" not in run("models", "list").output  # nothing registered


@pytest.mark.slow
def test_mlflow_ui_serves_the_projects_store_on_loopback(
    trained: tuple[object, list[object]],
) -> None:
    import os
    import subprocess
    import sys
    import time

    import httpx

    from tests.conftest import free_port

    settings = trained[0]
    port = free_port()
    env = {**os.environ, "RIDESTREAM_MLFLOW__HOME": str(settings.mlflow.home)}  # type: ignore[attr-defined]
    ridestream = Path(sys.executable).with_name("ridestream")
    server = subprocess.Popen([str(ridestream), "mlflow", "ui", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/registered-models/search", timeout=2
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "mlflow server did not answer"
                assert server.poll() is None, "mlflow server exited"
                time.sleep(0.5)
        assert response.status_code == 200
        names = {model["name"] for model in response.json()["registered_models"]}
        assert {"ride-duration", "ride-cost", "ride-tip", "ride-duration-simple"} <= names
    finally:
        import signal

        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_every_service_adds_its_commands_through_its_entry_point() -> None:
    from ridestream.cli.app import SERVICES

    assert SERVICES == ["batch", "decisions", "gateway", "predictors", "producers", "training"]
    names = {command.name or command.callback.__name__ for command in app.registered_commands}
    names |= {group.name for group in app.registered_groups}
    for command in ("predict", "decide", "gateway", "replay", "train", "batch", "kestra"):
        assert command in names
