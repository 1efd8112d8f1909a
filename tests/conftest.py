"""Shared fixtures: one real Kafka broker per test session, unique topics per test.

The broker is started through the same code users run (``ridestream.kafka.local.LocalKafka``),
on free loopback ports with its own state directory, so a developer's running broker is left
alone. ``RIDESTREAM_TEST_BROKERS=3`` makes it a three-node cluster (replication 3, min ISR 2):
``make test`` runs the tests marked ``cluster`` (exactly once, failures) that way too. Set
``RIDESTREAM_KAFKA_BOOTSTRAP`` to run the suite against a broker or cluster that already runs.
"""

from __future__ import annotations

import os

# The suite shares two cores with a broker and sometimes another job: OpenMP threads that spin
# long while waiting turn that sharing into minutes-long stalls in LightGBM, and threads that
# never spin (OMP_WAIT_POLICY=PASSIVE) sleep and wake at every barrier, which made training on
# the suite's small samples several times slower. A short spin, then sleep. Set before it loads.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ridestream.kafka.clients import make_admin
from ridestream.kafka.local import LocalKafka
from ridestream.kafka.nodes import free_port_run
from ridestream.kafka.topics import create_project_topics, delete_topics
from ridestream.settings import LocalKafkaSettings, Settings, TopicSettings
from ridestream.store.decisions import DecisionStore
from ridestream.store.tables import metadata

EXTERNAL_BOOTSTRAP = os.environ.get("RIDESTREAM_KAFKA_BOOTSTRAP")
SESSION_BROKERS = int(os.environ.get("RIDESTREAM_TEST_BROKERS", "1"))


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def local_kafka_settings(home: Path) -> LocalKafkaSettings:
    """A broker of its own: free ports, state under ``home``, the shared jar cache."""
    return LocalKafkaSettings(port=free_port(), controller_port=free_port(), home=home, heap="512m")


def local_cluster_settings(home: Path, brokers: int) -> LocalKafkaSettings:
    """A cluster of its own: ``2 × brokers`` free ports in a row (node i: base + 2i and
    base + 2i + 1), state under ``home``."""
    base = free_port_run(2 * brokers)
    return LocalKafkaSettings(
        brokers=brokers, port=base, controller_port=base + 1, home=home, heap="512m"
    )


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka | None]:
    """The broker this session started, or None when an external one is configured."""
    if EXTERNAL_BOOTSTRAP:
        yield None
        return
    home = tmp_path_factory.mktemp("kafka")
    if SESSION_BROKERS > 1:
        broker = LocalKafka(local_cluster_settings(home, SESSION_BROKERS))
    else:
        broker = LocalKafka(local_kafka_settings(home))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def bootstrap(session_broker: LocalKafka | None) -> str:
    """bootstrap.servers of the session's broker."""
    return EXTERNAL_BOOTSTRAP or session_broker.bootstrap  # type: ignore[union-attr]


def make_settings(bootstrap: str, prefix: str | None = None, **overrides: object) -> Settings:
    """Settings that ignore the developer's environment and .env, with a unique topic prefix."""
    topics = TopicSettings(prefix=prefix or f"t{uuid.uuid4().hex[:10]}.", partitions=3)
    return Settings(_env_file=None, kafka_bootstrap=bootstrap, topics=topics, **overrides)  # type: ignore[call-arg]


@pytest.fixture
def settings_factory(bootstrap: str) -> Iterator[Callable[..., Settings]]:
    """Make settings with fresh, created topics; the topics are deleted after the test."""
    made: list[Settings] = []

    def factory(**overrides: object) -> Settings:
        settings = make_settings(bootstrap, **overrides)
        create_project_topics(settings, make_admin(settings))
        made.append(settings)
        return settings

    yield factory
    for settings in made:
        delete_topics(make_admin(settings), list(settings.topics.names().values()))


@pytest.fixture
def kafka_settings(settings_factory: Callable[..., Settings]) -> Settings:
    """Settings pointing at the session broker, with this test's own topics."""
    return settings_factory()


# -- MLflow ------------------------------------------------------------------------------------
TRAIN_SAMPLE = 6000  # rides per month: enough for real models, quick enough for every run


def mlflow_settings(home: Path, **overrides: object) -> Settings:
    """Settings with a private MLflow store (SQLite + local artifacts) under ``home``."""
    from ridestream.settings import MlflowSettings, ModelSettings

    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        mlflow=MlflowSettings(home=home / "mlflow"),
        models=ModelSettings(cache_dir=home / "model-cache", poll_interval_s=0.2),
        **overrides,
    )


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[object]]:
    """One real training run (every target, sampled months) into a session MLflow store."""
    from ridestream.ml.tlc import month_file
    from training.train import train_models

    settings = mlflow_settings(tmp_path_factory.mktemp("trained"))
    results = train_models(
        settings,
        ["duration", "cost", "tip", "simple"],
        month_file("2023-01"),
        month_file("2023-02"),
        sample=TRAIN_SAMPLE,
        progress=False,
    )
    return settings, results


# -- PostgreSQL ---------------------------------------------------------------------------------
def _postgres_bin() -> Path:
    """The directory of Debian's PostgreSQL server binaries (newest major version)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed: make setup installs it (scripts/system-deps.sh)"
        )
    return found[-1].parent


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port, for the decision store."""
    import shutil
    import subprocess
    import tempfile

    bindir = _postgres_bin()
    # Not under pytest's tmp (private to this user): the server may run as another user.
    home = Path(tempfile.mkdtemp(prefix="ridestream-postgres-"))
    data, port = home / "data", free_port()
    # PostgreSQL refuses to run as root: as root, run it as Debian's postgres user.
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]

    def run(*command: str) -> None:
        subprocess.run([*run_as, *command], check=True, capture_output=True, cwd=home)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "ridestream", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(home / "log"),
        "-w",
        "start",
    )
    try:
        run(
            str(bindir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "ridestream",
            "decisions",
        )
        yield f"postgresql+psycopg://ridestream@127.0.0.1:{port}/decisions"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


# The training flow the Kestra client deploys (a file of training/, read, not imported).
TRAINING_FLOW = Path(__file__).resolve().parents[1] / "training" / "kestra" / "train-models.yml"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DecisionStore]:
    """The store on a SQLite file (the default) and on a real PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state' / 'decisions.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = DecisionStore(url)
    try:
        yield store
    finally:
        if request.param == "postgresql":  # one server for the session: leave it empty
            metadata.drop_all(store.engine)
        store.close()


@pytest.fixture
def register_simple() -> Callable[..., str]:
    """Train and register ``ride-duration-simple`` on sampled months; returns its version (for
    tests of the core that need a real registered model)."""
    from tests.training.test_train import train_simple

    def register(settings: Settings, max_rounds: int) -> str:
        return train_simple(settings, max_rounds=max_rounds).version

    return register
