from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ridestream.kafka.clients import consumer_config, producer_config
from ridestream.settings import Settings, redact


def settings_from_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_defaults_point_at_the_local_broker_on_loopback() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.uses_local_kafka
    assert settings.local_kafka.host == "127.0.0.1"


def test_environment_with_prefix_and_nested_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from_env(
        monkeypatch,
        RIDESTREAM_TOPICS__PREFIX="tenant-a.",
        RIDESTREAM_TOPICS__PARTITIONS="12",
        RIDESTREAM_LOCAL_KAFKA__PORT="19092",
    )
    assert settings.topics.full("started") == "tenant-a.rides.started"
    assert settings.topics.partitions == 12
    assert settings.bootstrap_servers == "127.0.0.1:19092"


def test_librdkafka_options_pass_through_under_their_own_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from_env(
        monkeypatch,
        RIDESTREAM_KAFKA_BOOTSTRAP="broker-1:9093,broker-2:9093",
        RIDESTREAM_KAFKA_CONFIG='{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", '
        '"sasl.username": "svc", "sasl.password": "hunter2", "ssl.ca.location": "/etc/ca.pem"}',
        RIDESTREAM_PRODUCER_CONFIG='{"linger.ms": 20}',
    )
    produced = producer_config(settings)
    consumed = consumer_config(settings, "g")
    for config in (produced, consumed):
        assert config["bootstrap.servers"] == "broker-1:9093,broker-2:9093"
        assert config["security.protocol"] == "SASL_SSL"
        assert config["sasl.password"] == "hunter2"
        assert config["ssl.ca.location"] == "/etc/ca.pem"
    assert produced["linger.ms"] == 20  # the setting wins over the default
    assert produced["enable.idempotence"] is True
    assert produced["acks"] == "all"
    assert consumed["isolation.level"] == "read_committed"
    assert consumed["enable.auto.commit"] is False


def test_redact_masks_secrets_only() -> None:
    config = {
        "sasl.password": "hunter2",
        "ssl.key.password": "k",
        "sasl.oauthbearer.client.secret": "s",
        "basic.auth.user.info": "u:p",
        "sasl.username": "svc",
    }
    masked = redact(config)
    assert masked["sasl.username"] == "svc"
    assert {k for k, v in masked.items() if v == "***"} == set(config) - {"sasl.username"}


def test_bootstrap_servers_must_come_from_its_own_setting() -> None:
    with pytest.raises(ValidationError, match="RIDESTREAM_KAFKA_BOOTSTRAP"):
        Settings(_env_file=None, kafka_config={"bootstrap.servers": "x:9092"})  # type: ignore[call-arg]


def test_client_options_come_from_a_properties_file_and_kafka_config_wins(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(
        "# a comment\n! another\n\nsecurity.protocol = SASL_SSL\nsasl.password=p=w\nlinger.ms=7\n"
    )
    settings = Settings(_env_file=None, kafka_config_file=path, kafka_config={"linger.ms": 9})  # type: ignore[call-arg]
    assert settings.client_options == {
        "security.protocol": "SASL_SSL",
        "sasl.password": "p=w",
        "linger.ms": 9,
    }


def test_a_bad_properties_file_is_refused_without_echoing_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("sasl.password hunter2\n")
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, kafka_config_file=path)  # type: ignore[call-arg]
    assert "client.properties:1: expected key=value" in str(raised.value)
    assert "hunter2" not in str(raised.value)
    with pytest.raises(ValidationError, match="cannot read"):
        Settings(_env_file=None, kafka_config_file=tmp_path / "missing")  # type: ignore[call-arg]
    path.write_text("bootstrap.servers=elsewhere:9092\n")
    with pytest.raises(ValidationError, match="RIDESTREAM_KAFKA_BOOTSTRAP"):
        Settings(_env_file=None, kafka_config_file=path)  # type: ignore[call-arg]
