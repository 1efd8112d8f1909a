"""A real Apache Kafka broker for development, tests and the demo: one KRaft node on loopback.

Kafka's jars come from Maven Central once (``mvn dependency:copy-dependencies`` into a cache
outside the repository), storage is formatted once, and the broker runs as a detached ``java``
process from the machine's Java 17+. ``start`` returns when the broker answers an admin metadata
request; a broker this runner already started is reused.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from ridestream.kafka.clients import cluster_metadata
from ridestream.kafka.distribution import check_java, fetch_jars, java_executable
from ridestream.kafka.exceptions import BrokerError, KafkaOperationError
from ridestream.settings import LocalKafkaSettings

logger = logging.getLogger(__name__)


LOG4J2_PROPERTIES = """\
# Written by ridestream: the broker logs to files under {logs}, warnings and above to stdout.
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {logs}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
appender.console.filter.threshold.type = ThresholdFilter
appender.console.filter.threshold.level = warn
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
rootLogger.appenderRef.console.ref = console
"""


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts TCP connections at host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID in Kafka's URL-safe base64 form (22 characters).

    Like Kafka's own ``Uuid.randomUuid``, never one starting with "-": command-line parsers take
    that for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class BrokerStatus:
    """What ``ridestream kafka status`` reports."""

    bootstrap: str
    pid: int | None
    answers: bool
    home: Path
    version: str

    @property
    def running(self) -> bool:
        """True when the process this runner started is alive."""
        return self.pid is not None


class LocalKafka:
    """Fetches, formats, starts, stops and kills one local KRaft broker."""

    def __init__(self, settings: LocalKafkaSettings) -> None:
        self.settings = settings
        self.home = settings.home
        self.jars_dir = settings.cache_dir / settings.version / "libs"

    # -- paths ---------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """The PLAINTEXT listener, ``127.0.0.1:<port>``."""
        return f"{self.settings.host}:{self.settings.port}"

    @property
    def config_path(self) -> Path:
        """server.properties, written on every start from the settings."""
        return self.home / "server.properties"

    @property
    def data_dir(self) -> Path:
        """log.dirs: the KRaft metadata log and the topic partitions."""
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        """The broker's own logs (server.log, server.out)."""
        return self.home / "logs"

    @property
    def pid_path(self) -> Path:
        """The pid of the java process this runner started."""
        return self.home / "kafka.pid"

    def fetch_jars(self) -> Path:
        """Download Kafka's jars from Maven Central once; later calls return the cache."""
        return fetch_jars(self.settings.version, self.jars_dir)

    def classpath(self) -> str:
        """The java -cp value for the cached jars."""
        return str(self.jars_dir / "*")

    # -- configuration and storage --------------------------------------------------------------
    def server_properties(self) -> str:
        """A combined broker+controller node on loopback, replication factors of one."""
        host, port, controller = (
            self.settings.host,
            self.settings.port,
            self.settings.controller_port,
        )
        return "\n".join(
            [
                "# Written by ridestream kafka start; edit the settings, not this file.",
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers={host}:{controller}",
                f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
                f"advertised.listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={self.data_dir}",
                "num.partitions=6",
                "default.replication.factor=1",
                "min.insync.replicas=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=10",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                # Topics are created on purpose (ridestream topics create), never by a typo.
                "auto.create.topics.enable=false",
                "",
            ]
        )

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.server_properties())
        (self.home / "log4j2.properties").write_text(LOG4J2_PROPERTIES.format(logs=self.logs_dir))

    def _java_command(self, java: Path, main: str, *args: str) -> list[str]:
        return [
            str(java),
            f"-Xms{self.settings.heap}",
            f"-Xmx{self.settings.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            self.classpath(),
            main,
            *args,
        ]

    def format_storage(self, java: Path) -> None:
        """Format the KRaft storage once; an already formatted directory is left alone."""
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        logger.info("formatting Kafka storage in %s (cluster id %s)", self.data_dir, cluster_id)
        result = subprocess.run(
            self._java_command(
                java, "kafka.tools.StorageTool", "format", "--standalone",
                "-t", cluster_id, "-c", str(self.config_path),
            ),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise BrokerError(f"formatting {self.data_dir} failed: {result.stdout}{result.stderr}")

    # -- process -------------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The pid of the broker this runner started, if that process is still alive."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        # Guard against pid reuse: the process must be our java running our config.
        if b"kafka.Kafka" not in cmdline or str(self.config_path).encode() not in cmdline:
            return None
        return pid

    def answers(self, timeout_s: float = 2.0, admin: AdminClient | None = None) -> bool:
        """True when a broker at the bootstrap address answers a metadata request."""
        admin = admin or AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        try:
            cluster_metadata(admin, timeout_s)
        except KafkaOperationError:
            return False
        return True

    def status(self) -> BrokerStatus:
        """Whether our broker runs, and whether anything answers at its address."""
        return BrokerStatus(
            bootstrap=self.bootstrap,
            pid=self.pid(),
            answers=self.answers(),
            home=self.home,
            version=self.settings.version,
        )

    def start(self) -> BrokerStatus:
        """Start the broker (or reuse the running one) and wait until it answers."""
        if self.pid() is not None:
            logger.info("Kafka already running (pid %s); reusing it", self.pid())
            self.wait_ready()
            return self.status()
        for port in (self.settings.port, self.settings.controller_port):
            if port_in_use(self.settings.host, port):
                if port == self.settings.port and self.answers():
                    logger.warning(
                        "a Kafka broker not started by ridestream answers at %s; using it",
                        self.bootstrap,
                    )
                    return self.status()
                raise BrokerError(
                    f"port {port} on {self.settings.host} is taken by another process: stop it "
                    "or choose free ports with RIDESTREAM_LOCAL_KAFKA__PORT / "
                    "RIDESTREAM_LOCAL_KAFKA__CONTROLLER_PORT (then RIDESTREAM_KAFKA_BOOTSTRAP "
                    "is derived from them)"
                )
        java = java_executable()
        check_java(java)
        self.fetch_jars()
        self._write_config()
        self.format_storage(java)
        out = (self.logs_dir / "server.out").open("ab")
        process = subprocess.Popen(
            self._java_command(java, "kafka.Kafka", str(self.config_path)),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the CLI; our signals are not its signals
            cwd=self.home,
        )
        out.close()
        self.pid_path.write_text(str(process.pid))
        logger.info(
            "started Kafka %s (pid %s) at %s", self.settings.version, process.pid, self.bootstrap
        )
        self.wait_ready(process)
        return self.status()

    def wait_ready(self, process: subprocess.Popen[bytes] | None = None) -> None:
        """Block until the broker answers a metadata request; BrokerError on death or timeout."""
        deadline = time.monotonic() + self.settings.start_timeout_s
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise BrokerError(
                    f"Kafka exited with code {process.returncode} while starting:\n"
                    + self._tail_output()
                )
            if self.answers(timeout_s=1.0, admin=admin):
                return
            time.sleep(0.2)
        if process is not None:  # don't leave a half-started broker behind
            self.stop()
        raise BrokerError(
            f"Kafka did not answer at {self.bootstrap} within {self.settings.start_timeout_s}s:\n"
            + self._tail_output()
        )

    def _tail_output(self, lines: int = 30) -> str:
        text = ""
        for name in ("server.out", "server.log"):
            path = self.logs_dir / name
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text or "(no broker output)"

    def stop(self) -> bool:
        """SIGTERM the broker and wait for a clean shutdown (SIGKILL after the stop timeout)."""
        pid = self.pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:  # it died between the check and the signal
            self.pid_path.unlink(missing_ok=True)
            return False
        if not self._wait_exit(pid, self.settings.stop_timeout_s):
            logger.warning(
                "Kafka (pid %s) ignored SIGTERM for %ss; killing it",
                pid,
                self.settings.stop_timeout_s,
            )
            os.kill(pid, signal.SIGKILL)
            self._wait_exit(pid, 10)
        self.pid_path.unlink(missing_ok=True)
        logger.info("stopped Kafka (pid %s)", pid)
        return True

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (reliability tests); the pid file stays."""
        pid = self.pid()
        if pid is None:
            raise BrokerError("no running broker to kill")
        os.kill(pid, signal.SIGKILL)
        self._wait_exit(pid, 10)

    def restart_after_crash(self) -> BrokerStatus:
        """Start again after :meth:`kill` (the stale pid file is ignored)."""
        self.pid_path.unlink(missing_ok=True)
        return self.start()

    @staticmethod
    def _wait_exit(pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                # Reap it if it is our child; otherwise just probe for existence.
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return True
            except ChildProcessError:
                pass
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            if (
                Path(f"/proc/{pid}/stat").exists()
                and b") Z " in Path(f"/proc/{pid}/stat").read_bytes()
            ):
                return True  # a zombie of some other parent: it is dead
            time.sleep(0.1)
        return False
