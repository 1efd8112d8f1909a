from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from ridestream.kafka.distribution import check_java, parse_java_major
from ridestream.kafka.exceptions import BrokerError
from ridestream.kafka.local import LocalKafka
from ridestream.kafka.nodes import new_cluster_id
from ridestream.kafka.security import provision
from tests.conftest import local_kafka_settings


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "25" 2025-09-16', 25),
        ('openjdk version "21.0.2" 2024-01-16 LTS', 21),
    ],
)
def test_java_versions_are_read_from_java_version_output(output: str, major: int) -> None:
    assert parse_java_major(output) == major


def fake_java(tmp_path: Path, version_line: str) -> Path:
    java = tmp_path / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return java


def test_an_old_java_is_refused_with_what_to_do(tmp_path: Path) -> None:
    java = fake_java(tmp_path, 'openjdk version "11.0.20" 2023-07-18')
    with pytest.raises(BrokerError, match=r"needs Java 17\+.*Java 11.*openjdk-17"):
        check_java(java)


def test_the_machines_java_is_new_enough() -> None:
    assert check_java() >= 17


def test_a_missing_maven_is_reported_before_anything_is_fetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = local_kafka_settings(tmp_path / "home").model_copy(
        update={"cache_dir": tmp_path / "cache"}
    )
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(BrokerError, match=r"Maven \(mvn\) is needed.*apt-get install maven"):
        LocalKafka(settings).fetch_jars()


def test_a_taken_port_is_reported_with_the_setting_to_change(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        settings = local_kafka_settings(tmp_path).model_copy(update={"port": taken})
        with pytest.raises(
            BrokerError, match=rf"port {taken} .* taken.*RIDESTREAM_LOCAL_KAFKA__PORT"
        ):
            LocalKafka(settings).start()


def test_server_properties_bind_loopback_with_single_node_replication(tmp_path: Path) -> None:
    settings = local_kafka_settings(tmp_path)
    props = dict(
        line.split("=", 1)
        for line in LocalKafka(settings).server_properties().splitlines()
        if line and not line.startswith("#")
    )
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == (
        f"PLAINTEXT://127.0.0.1:{settings.port},CONTROLLER://127.0.0.1:{settings.controller_port}"
    )
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_a_secured_node_speaks_sasl_ssl_to_clients_and_mutual_tls_to_controllers(
    tmp_path: Path,
) -> None:
    settings = local_kafka_settings(tmp_path)
    local = LocalKafka(settings, secure=True)
    provision(local.home, settings.host)
    props = dict(
        line.split("=", 1)
        for line in local.server_properties().splitlines()
        if line and not line.startswith("#")
    )
    assert props["listeners"].startswith(f"SASL_SSL://127.0.0.1:{settings.port},")
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SSL"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:CN=ridestream-node"
    assert "StandardAuthorizer" in props["authorizer.class.name"]
    # A plaintext cluster's storage cannot be started secured: its users were never written.
    plain = LocalKafka(local_kafka_settings(tmp_path / "plain"))
    plain.nodes[0].data_dir.mkdir(parents=True)
    (plain.nodes[0].data_dir / "meta.properties").write_text("")
    with pytest.raises(BrokerError, match="formatted plaintext"):
        LocalKafka(plain.settings, secure=True).start()


def test_cluster_ids_are_kafka_shaped_and_never_look_like_an_option() -> None:
    ids = [new_cluster_id() for _ in range(2000)]  # 1 in 64 would start with "-" unguarded
    assert all(len(i) == 22 for i in ids)
    assert not any("=" in i or i.startswith("-") for i in ids)


@pytest.mark.kafka
def test_start_reuses_a_running_broker_and_stop_is_clean(session_broker: LocalKafka | None) -> None:
    if session_broker is None:
        pytest.skip("the suite runs against an external broker (RIDESTREAM_KAFKA_BOOTSTRAP)")
    pid = session_broker.pid()
    assert pid is not None
    again = session_broker.start()
    assert again.pid == pid
    assert again.answers
    assert os.path.exists(session_broker.nodes[0].data_dir / "meta.properties")


@pytest.mark.kafka
def test_a_broker_stops_cleanly_and_restarts_on_its_formatted_storage(tmp_path: Path) -> None:
    broker = LocalKafka(local_kafka_settings(tmp_path))
    try:
        first = broker.start()
        assert first.answers
        assert first.pid is not None
        meta = (broker.nodes[0].data_dir / "meta.properties").read_text()
        assert broker.stop() is True
        assert broker.status().running is False
        assert not broker.answers(timeout_s=1)
        second = broker.start()
        assert second.answers
        assert second.pid != first.pid
        assert (broker.nodes[0].data_dir / "meta.properties").read_text() == meta  # formatted once
        # A clean shutdown leaves Kafka's own marker that the logs need no recovery.
        assert broker.stop() is True
        assert (broker.nodes[0].data_dir / ".kafka_cleanshutdown").exists() or any(
            "shut down completed" in line
            for line in (broker.nodes[0].logs_dir / "server.log").read_text().splitlines()
        )
    finally:
        broker.stop()
