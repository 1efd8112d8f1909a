"""The secured local cluster, as `ridestream kafka start --brokers 3 --secure` runs it: SASL_SSL
with SCRAM users and a CA of its own, and ACLs that give each service principal its role only."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from ridestream.kafka.clients import cluster_metadata, consumer_config, make_admin, producer_config
from ridestream.kafka.exceptions import AccessDeniedError, KafkaOperationError
from ridestream.kafka.local import LocalKafka
from ridestream.kafka.refusals import PLAINTEXT_ON_TLS_HINT, TLS_WITHOUT_SASL_HINT
from ridestream.kafka.security import PRINCIPALS, SecureFiles, provision
from ridestream.kafka.topics import create_project_topics
from ridestream.ml.tlc import month_file
from ridestream.settings import Settings, TopicSettings
from tests.conftest import local_cluster_settings
from tests.helpers import consume_all, keys
from tests.processes import ServiceProcess

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    home = tmp_path_factory.mktemp("secured")
    local = LocalKafka(local_cluster_settings(home, brokers=3), secure=True)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def as_principal(
    local: LocalKafka, principal: str | None, prefix: str = "s.", config_file: Path | None = None
) -> Settings:
    """Settings of a client of ``principal`` (None: no credentials at all)."""
    if config_file is None and principal is not None:
        config_file = local.client_config_file(principal)
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        local_kafka=local.settings,
        kafka_config_file=config_file,
        topics=TopicSettings(prefix=prefix, partitions=3),
        delivery_timeout_ms=10_000,
    )


@pytest.fixture
def topics(secured: LocalKafka) -> Settings:
    """This test's topics, created by the operator, with every service's ACLs for them."""
    operator = as_principal(secured, "operator", prefix=f"s{uuid.uuid4().hex[:8]}.")
    secured.apply_acls(operator)
    create_project_topics(operator, make_admin(operator))
    return operator


def refusal_of(settings: Settings) -> str:
    with pytest.raises(KafkaOperationError) as raised:
        cluster_metadata(make_admin(settings), 10.0)
    return str(raised.value)


def test_the_secured_files_are_private_and_every_principal_has_its_config(
    secured: LocalKafka,
) -> None:
    files = SecureFiles.of(secured.home)
    assert (files.root.stat().st_mode & 0o777) == 0o700
    for path in (
        files.ca_key,
        files.node_pem,
        files.users,
        *secured.nodes[0].home.glob("*.properties"),
    ):
        if path.name != "log4j2.properties":
            assert (path.stat().st_mode & 0o077) == 0, path
    assert set(files.passwords()) == set(PRINCIPALS)
    assert "listeners=SASL_SSL://" in secured.server_properties()
    assert secured.status().secure


def test_clients_without_credentials_with_a_wrong_password_or_untrusted_are_refused_clearly(
    secured: LocalKafka, tmp_path: Path
) -> None:
    # Plaintext against the TLS listener: the hint names the likely cause.
    assert PLAINTEXT_ON_TLS_HINT in refusal_of(as_principal(secured, None))

    own = secured.client_config_file("operator").read_text()
    password = SecureFiles.of(secured.home).passwords()["operator"]

    tls_only = tmp_path / "tls-only.properties"
    tls_only.write_text(
        f"security.protocol=SSL\nssl.ca.location={SecureFiles.of(secured.home).ca_cert}\n"
    )
    assert TLS_WITHOUT_SASL_HINT in refusal_of(as_principal(secured, None, config_file=tls_only))

    wrong = tmp_path / "wrong.properties"
    wrong.write_text(own.replace(password, "not-the-password"))
    with pytest.raises(AccessDeniedError, match="invalid credentials"):
        cluster_metadata(make_admin(as_principal(secured, None, config_file=wrong)), 10.0)

    # A CA of another cluster: the nodes' certificate does not verify.
    other = provision(tmp_path / "other", "127.0.0.1")
    untrusted = tmp_path / "untrusted.properties"
    untrusted.write_text(own.replace(str(SecureFiles.of(secured.home).ca_cert), str(other.ca_cert)))
    with pytest.raises(AccessDeniedError, match="certificate verify failed") as raised:
        cluster_metadata(make_admin(as_principal(secured, None, config_file=untrusted)), 10.0)
    assert password not in str(raised.value)

    # The principal's own file works.
    assert len(cluster_metadata(make_admin(as_principal(secured, "operator")), 10.0).brokers) == 3


def first_event(settings: Settings, group: str) -> int | str:
    """Join ``group`` (prefixed) on the started rides: the first error's code, or "assigned"."""
    consumer = Consumer(consumer_config(settings, settings.topics.prefix + group))
    assigned: list[object] = []
    consumer.subscribe(
        [settings.topics.full("started")], on_assign=lambda _c, parts: assigned.append(parts)
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            error = msg.error() if msg is not None else None
            if error is not None:
                return int(error.code())
            if assigned:
                return "assigned"
    finally:
        consumer.close()
    raise AssertionError(f"joining {group} neither failed nor was assigned")


def test_a_predictor_may_not_write_decisions_nor_read_another_groups_offsets(
    secured: LocalKafka, topics: Settings
) -> None:
    predictor = as_principal(secured, "predictor", prefix=topics.topics.prefix)
    errors: list[KafkaError | None] = []
    producer = Producer(producer_config(predictor))
    producer.produce(
        topics.topics.full("decisions"), b"x", on_delivery=lambda err, _msg: errors.append(err)
    )
    producer.flush(20)
    assert len(errors) == 1
    assert errors[0] is not None
    assert errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # Reading a group's offsets means joining it: the decision service's group is refused, its
    # own is not (it is assigned the topic's partitions).
    assert first_event(predictor, "ridestream.decisions") == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert first_event(predictor, "ridestream.predictor.tip") == "assigned"


class Services:
    """ridestream commands as processes, each under its principal's credentials, logged."""

    def __init__(self, local: LocalKafka, topics: Settings, models: Settings, logs: Path) -> None:
        self.local, self.logs = local, logs
        self.env = {
            **os.environ,
            "RIDESTREAM_LOCAL_KAFKA__HOME": str(local.settings.home),
            "RIDESTREAM_LOCAL_KAFKA__PORT": str(local.settings.port),
            "RIDESTREAM_LOCAL_KAFKA__CONTROLLER_PORT": str(local.settings.controller_port),
            "RIDESTREAM_LOCAL_KAFKA__BROKERS": str(local.count),
            "RIDESTREAM_TOPICS__PREFIX": topics.topics.prefix,
            "RIDESTREAM_MLFLOW__HOME": str(models.mlflow.home),
            "RIDESTREAM_MODELS__CACHE_DIR": str(models.models.cache_dir),
            "RIDESTREAM_DECISIONS__HOME": str(logs / "decisions"),
            "RIDESTREAM_DECISIONS__DRIFT__ENABLED": "false",
        }
        self.env.pop("RIDESTREAM_KAFKA_BOOTSTRAP", None)
        self.processes: dict[str, ServiceProcess] = {}

    def start(self, principal: str, name: str, *args: str) -> subprocess.Popen[bytes]:
        env = {
            **self.env,
            "RIDESTREAM_KAFKA_CONFIG_FILE": str(self.local.client_config_file(principal)),
        }
        service = ServiceProcess(name, env, self.logs, *args, replica=False)
        self.processes[name] = service
        return service.process

    def log(self, name: str) -> str:
        return self.processes[name].log

    def stop(self) -> None:
        for service in self.processes.values():
            service.stop()


def test_a_service_the_cluster_refuses_stops_with_exit_77_not_a_retry_loop(
    secured: LocalKafka, topics: Settings, trained: tuple[Settings, list[object]], tmp_path: Path
) -> None:
    services = Services(secured, topics, trained[0], tmp_path)
    # A predictor run with the gateway's credentials: the cluster lets it produce rides, not
    # consume them nor hold a predictor's transactional id.
    process = services.start("gateway", "tip", "predict", "--target", "tip", "--instance-id", "x")
    try:
        assert process.wait(timeout=120) == AccessDeniedError.exit_code
    finally:
        services.stop()
    text = services.log("tip")
    assert "was refused by the cluster" in text
    assert "authorization failed" in text.lower()
    assert text.count("Traceback") == 0
    for password in SecureFiles.of(secured.home).passwords().values():
        assert password not in text


def test_the_pipeline_runs_on_the_secured_cluster_and_no_log_holds_a_password(
    secured: LocalKafka, topics: Settings, trained: tuple[Settings, list[object]], tmp_path: Path
) -> None:
    rides = 300
    services = Services(secured, topics, trained[0], tmp_path)
    try:
        for target in ("duration", "cost", "tip"):
            services.start(
                "predictor", target, "predict", "--target", target, "--instance-id", "s1"
            )
        services.start("decisions", "decide", "decide", "--instance-id", "s1")
        publisher = services.start(
            "publisher", "replay", "replay", "--input", str(month_file("2023-02")),
            "--limit", str(rides), "--rate", "0", "--id-prefix", "sec-", "--no-progress",
        )  # fmt: skip
        assert publisher.wait(timeout=180) == 0, services.log("replay")[-3000:]
        # Read back as the cluster's admin: the test's reader is no service.
        admin = as_principal(secured, "admin", prefix=topics.topics.prefix)
        decisions = consume_all(
            admin,
            topics.topics.full("decisions"),
            expected=rides,
            idle_timeout_s=90,
            deadline_s=240,
        )
        for name, service in services.processes.items():
            assert service.process.poll() is None or name == "replay", service.log[-3000:]
    finally:
        services.stop()
    assert sorted(set(keys(decisions))) == [f"sec-{i:07d}" for i in range(rides)]
    assert len(decisions) == rides

    passwords = SecureFiles.of(secured.home).passwords().values()
    logs = [*tmp_path.glob("*.log"), *secured.home.glob("node-*/logs/*")]
    assert len(logs) >= 5 + 3
    for path in logs:
        text = path.read_text(errors="replace")
        for password in passwords:
            assert password not in text, f"a password in {path}"
