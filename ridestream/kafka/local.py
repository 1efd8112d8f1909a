"""A real Apache Kafka broker for development, tests and the demo: one KRaft node on loopback.

Kafka's jars come from Maven Central once (``mvn dependency:copy-dependencies`` into a cache
outside the repository), storage is formatted once, and the broker runs as a detached ``java``
process from the machine's Java 17+. ``start`` returns when the broker answers an admin metadata
request; a broker this runner already started is reused. A secured cluster (``secure=True``)
gets its CA, certificates and users from ``ridestream.kafka.security`` and the ACLs of
``ridestream.kafka.acls``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

from ridestream.kafka import acls
from ridestream.kafka.clients import cluster_metadata
from ridestream.kafka.distribution import check_java, fetch_jars, java_executable
from ridestream.kafka.exceptions import BrokerError, KafkaOperationError
from ridestream.kafka.nodes import (
    LOG4J2_PROPERTIES,
    BrokerStatus,
    Node,
    NodeStatus,
    new_cluster_id,
    node_properties,
    port_in_use,
    wait_exit,
)
from ridestream.kafka.security import (
    ADMIN,
    SecureFiles,
    node_security_properties,
    provision,
    scram_arguments,
)
from ridestream.settings import KafkaConfigValue, LocalKafkaSettings, Settings, read_properties

logger = logging.getLogger(__name__)


class LocalKafka:
    """Fetches, formats, starts, stops and kills a local KRaft broker, or a cluster of them.

    One node (the default) lives in ``home`` itself. A cluster of ``brokers`` nodes lives in
    ``home/node-<id>``, every node a broker and a voter of the controller quorum; the number
    of nodes a cluster was started with is remembered in ``home/cluster.json``, so ``status``
    and ``stop`` find every node without being told.
    """

    def __init__(
        self, settings: LocalKafkaSettings, brokers: int | None = None, secure: bool | None = None
    ) -> None:
        self.settings = settings
        self.home = settings.home
        self.jars_dir = settings.cache_dir / settings.version / "libs"
        recorded = self._recorded()
        self.count = brokers or int(recorded.get("brokers", 0)) or settings.brokers
        self.secure = bool(recorded.get("secure", False)) if secure is None else secure
        self.files = SecureFiles.of(self.home)
        ports = settings.node_ports(self.count)
        self.nodes = [
            Node(i + 1, port, cport, self.home if self.count == 1 else self.home / f"node-{i + 1}")
            for i, (port, cport) in enumerate(ports)
        ]

    def _recorded(self) -> dict[str, int | bool]:
        """What the cluster in ``home`` was started with: its number of nodes, secured or not."""
        try:
            recorded: dict[str, int | bool] = json.loads((self.home / "cluster.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return recorded if isinstance(recorded, dict) else {}

    def admin_options(self) -> dict[str, KafkaConfigValue]:
        """The client options of the cluster's own administrator (none on a plaintext one)."""
        return read_properties(self.files.client_config(ADMIN)) if self.secure else {}

    def client_config_file(self, principal: str) -> Path:
        """The librdkafka options file of a principal of the secured cluster."""
        return self.files.client_config(principal)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """Every node's PLAINTEXT listener, ``127.0.0.1:<port>``, comma separated."""
        return self.settings.bootstrap(self.count)

    def fetch_jars(self) -> Path:
        """Download Kafka's jars from Maven Central once; later calls return the cache."""
        return fetch_jars(self.settings.version, self.jars_dir)

    def classpath(self) -> str:
        """The java -cp value for the cached jars."""
        return str(self.jars_dir / "*")

    # -- configuration and storage --------------------------------------------------------------
    def server_properties(self, node: Node | None = None) -> str:
        """The configuration of a node (the first by default)."""
        security = node_security_properties(self.files) if self.secure else None
        return node_properties(node or self.nodes[0], self.nodes, self.settings.host, security)

    def _write_config(self, node: Node) -> None:
        node.home.mkdir(parents=True, exist_ok=True)
        node.logs_dir.mkdir(parents=True, exist_ok=True)
        # Readable by its owner only: a secured node's file holds the admin's password.
        node.config_path.touch(mode=0o600)
        node.config_path.chmod(0o600)
        node.config_path.write_text(self.server_properties(node))
        (node.home / "log4j2.properties").write_text(LOG4J2_PROPERTIES.format(logs=node.logs_dir))

    def _java_command(self, java: Path, node: Node, main: str, *args: str) -> list[str]:
        return [
            str(java),
            f"-Xms{self.settings.heap}",
            f"-Xmx{self.settings.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={node.home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={node.logs_dir}",
            "-cp",
            self.classpath(),
            main,
            *args,
        ]

    def _cluster_id(self) -> str:
        """One cluster id for every node, kept beside them."""
        path = self.home / "cluster.id"
        if path.exists():
            return path.read_text().strip()
        self.home.mkdir(parents=True, exist_ok=True)
        cluster_id = new_cluster_id()
        path.write_text(cluster_id)
        return cluster_id

    def format_storage(self, java: Path, node: Node | None = None) -> None:
        """Format a node's KRaft storage once; an already formatted directory is left alone."""
        node = node or self.nodes[0]
        if (node.data_dir / "meta.properties").exists():
            return
        users = scram_arguments(self.files) if self.secure else []
        cluster_id = new_cluster_id() if self.count == 1 else self._cluster_id()
        logger.info("formatting Kafka storage in %s (cluster id %s)", node.data_dir, cluster_id)
        # One node forms its quorum alone; a cluster's voters are fixed in its configuration.
        quorum = ["--standalone"] if self.count == 1 else []
        result = subprocess.run(
            self._java_command(
                java, node, "kafka.tools.StorageTool", "format", *quorum,
                "-t", cluster_id, "-c", str(node.config_path), *users,
            ),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise BrokerError(f"formatting {node.data_dir} failed: {result.stdout}{result.stderr}")

    # -- process -------------------------------------------------------------------------------
    def node_pid(self, node: Node) -> int | None:
        """The pid of a node this runner started, if that process is still alive."""
        try:
            pid = int(node.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        # Guard against pid reuse: the process must be our java running our config.
        if b"kafka.Kafka" not in cmdline or str(node.config_path).encode() not in cmdline:
            return None
        return pid

    def pid(self) -> int | None:
        """The first node's pid, if it runs."""
        return self.node_pid(self.nodes[0])

    def answers(
        self, timeout_s: float = 2.0, admin: AdminClient | None = None, bootstrap: str | None = None
    ) -> bool:
        """True when a broker at the bootstrap address answers a metadata request."""
        admin = admin or self._admin(bootstrap)
        try:
            cluster_metadata(admin, timeout_s)
        except KafkaOperationError:
            return False
        return True

    def _admin(self, bootstrap: str | None = None) -> AdminClient:
        return AdminClient(
            {
                "bootstrap.servers": bootstrap or self.bootstrap,
                "log_level": 0,
                **self.admin_options(),
            }
        )

    def apply_acls(self, settings: Settings) -> int:
        """Create every service's ACLs for the topics of ``settings``, as the cluster's admin."""
        return acls.apply(self._admin(), acls.service_grants(settings))

    def status(self) -> BrokerStatus:
        """Whether our nodes run, and whether anything answers at their addresses."""
        nodes = tuple(
            NodeStatus(
                node.node_id,
                f"{self.settings.host}:{node.port}",
                self.node_pid(node),
                self.answers(timeout_s=1.0, bootstrap=f"{self.settings.host}:{node.port}"),
                node.home,
            )
            for node in self.nodes
        )
        return BrokerStatus(
            bootstrap=self.bootstrap,
            pid=nodes[0].pid,
            answers=any(n.answers for n in nodes),
            home=self.home,
            version=self.settings.version,
            nodes=nodes,
            secure=self.secure,
        )

    def _check_ports(self, node: Node) -> bool:
        """False when a broker we did not start already answers at the node's port (then it is
        used); BrokerError when its ports are taken by anything else."""
        host = self.settings.host
        for port in (node.port, node.controller_port):
            if port_in_use(host, port):
                if self.count == 1 and port == node.port and self.answers():
                    logger.warning(
                        "a Kafka broker not started by ridestream answers at %s; using it",
                        self.bootstrap,
                    )
                    return False
                raise BrokerError(
                    f"port {port} on {host} is taken by another process: stop it "
                    "or choose free ports with RIDESTREAM_LOCAL_KAFKA__PORT / "
                    "RIDESTREAM_LOCAL_KAFKA__CONTROLLER_PORT (node i uses port + 2i and "
                    "controller port + 2i)"
                )
        return True

    def start(self) -> BrokerStatus:
        """Start every node not running (or reuse those that are) and wait until the cluster
        answers with all of them."""
        stopped = [node for node in self.nodes if self.node_pid(node) is None]
        if not stopped:
            logger.info("Kafka already running (pid %s); reusing it", self.pid())
            self.wait_ready()
            return self.status()
        for node in stopped:
            if not self._check_ports(node):
                return self.status()
        java = java_executable()
        check_java(java)
        self.fetch_jars()
        self._check_security_matches(stopped)
        self.home.mkdir(parents=True, exist_ok=True)  # what status and stop find next time
        if self.secure:
            provision(self.home, self.settings.host)
        (self.home / "cluster.json").write_text(
            json.dumps({"brokers": self.count, "secure": self.secure})
        )
        processes = []
        for node in stopped:
            self._write_config(node)
            self.format_storage(java, node)
            out = (node.logs_dir / "server.out").open("ab")
            process = subprocess.Popen(
                self._java_command(java, node, "kafka.Kafka", str(node.config_path)),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives the CLI; our signals are not its signals
                cwd=node.home,
            )
            out.close()
            node.pid_path.write_text(str(process.pid))
            processes.append(process)
            logger.info(
                "started Kafka %s node %d (pid %s) at %s:%d",
                self.settings.version, node.node_id, process.pid, self.settings.host, node.port,
            )  # fmt: skip
        self.wait_ready(processes)
        return self.status()

    def _check_security_matches(self, nodes: list[Node]) -> None:
        """A node's storage holds its users from the day it was formatted: a plaintext cluster
        cannot be started secured, nor the other way round, without formatting it again."""
        formatted = [node for node in nodes if (node.data_dir / "meta.properties").exists()]
        recorded = bool(self._recorded().get("secure", False))
        if formatted and recorded != self.secure:
            was, now = ("secured", "plaintext") if recorded else ("plaintext", "secured")
            raise BrokerError(
                f"the cluster in {self.home} was formatted {was}; to start it {now}, stop it and "
                "remove that folder, or give it another RIDESTREAM_LOCAL_KAFKA__HOME"
            )

    def wait_ready(self, processes: list[subprocess.Popen[bytes]] | None = None) -> None:
        """Block until the cluster answers a metadata request listing every node; BrokerError
        when a node dies or on timeout."""
        deadline = time.monotonic() + self.settings.start_timeout_s
        admin = self._admin()
        while time.monotonic() < deadline:
            for process in processes or []:
                if process.poll() is not None:
                    raise BrokerError(
                        f"Kafka exited with code {process.returncode} while starting:\n"
                        + self._tail_output()
                    )
            try:
                if len(cluster_metadata(admin, 1.0).brokers) >= self.count:
                    return
            except KafkaOperationError:
                pass
            time.sleep(0.2)
        if processes:  # don't leave a half-started cluster behind
            self.stop()
        raise BrokerError(
            f"Kafka did not answer at {self.bootstrap} within {self.settings.start_timeout_s}s:\n"
            + self._tail_output()
        )

    def _tail_output(self, lines: int = 30) -> str:
        text = ""
        for node in self.nodes:
            for name in ("server.out", "server.log"):
                path = node.logs_dir / name
                if path.exists():
                    tail = path.read_text(errors="replace").splitlines()[-lines:]
                    text += f"-- node {node.node_id} {name}\n" + "\n".join(tail) + "\n"
        return text or "(no broker output)"

    def stop(self) -> bool:
        """SIGTERM every node and wait for a clean shutdown (SIGKILL after the stop timeout);
        False when none was running. The nodes are signalled together: one by one, the last
        would wait for a controller quorum that has already gone."""
        signalled = []
        for node in self.nodes:
            pid = self.node_pid(node)
            if pid is None:
                node.pid_path.unlink(missing_ok=True)
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:  # it died between the check and the signal
                node.pid_path.unlink(missing_ok=True)
                continue
            signalled.append((node, pid))
        deadline = time.monotonic() + self.settings.stop_timeout_s
        for node, pid in signalled:
            if not wait_exit(pid, max(deadline - time.monotonic(), 0.1)):
                logger.warning(
                    "Kafka node %d (pid %s) ignored SIGTERM for %ss; killing it",
                    node.node_id, pid, self.settings.stop_timeout_s,
                )  # fmt: skip
                os.kill(pid, signal.SIGKILL)
                wait_exit(pid, 10)
            node.pid_path.unlink(missing_ok=True)
            logger.info("stopped Kafka node %d (pid %s)", node.node_id, pid)
        return bool(signalled)

    def kill(self, node_id: int | None = None) -> None:
        """SIGKILL a node (the first by default), as a crash would; its pid file stays."""
        node = self.nodes[(node_id or 1) - 1]
        pid = self.node_pid(node)
        if pid is None:
            raise BrokerError(f"no running node {node.node_id} to kill")
        os.kill(pid, signal.SIGKILL)
        wait_exit(pid, 10)

    def restart_after_crash(self) -> BrokerStatus:
        """Start again after :meth:`kill` (stale pid files are ignored)."""
        for node in self.nodes:
            if self.node_pid(node) is None:
                node.pid_path.unlink(missing_ok=True)
        return self.start()
