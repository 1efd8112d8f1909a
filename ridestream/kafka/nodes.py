"""The local cluster's nodes: their listeners and folders, their configuration, their status."""

from __future__ import annotations

import base64
import os
import random
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


def free_port_run(count: int, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive ports nothing is bound to (an even one: node ``i`` of a
    local cluster takes ``base + 2i`` and ``base + 2i + 1``), for clusters of tests and benchmarks
    that must not meet the user's."""
    for _ in range(100):
        base = random.randrange(20_000, 60_000, 2)
        if not any(_bound(host, port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no run of {count} free ports found on {host}")


def _bound(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


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
class NodeStatus:
    """One node of the local cluster."""

    node_id: int
    bootstrap: str
    pid: int | None
    answers: bool
    home: Path


@dataclass(frozen=True)
class BrokerStatus:
    """What ``ridestream kafka status`` reports."""

    bootstrap: str
    pid: int | None  # the first node's
    answers: bool  # some node answers
    home: Path
    version: str
    nodes: tuple[NodeStatus, ...] = ()
    secure: bool = False  # SASL_SSL and ACLs, or plaintext

    @property
    def running(self) -> bool:
        """True when the process this runner started is alive."""
        return self.pid is not None


@dataclass(frozen=True)
class Node:
    """One combined broker and controller: its id, listeners and folder."""

    node_id: int
    port: int
    controller_port: int
    home: Path

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
        """The node's own logs (server.log, server.out)."""
        return self.home / "logs"

    @property
    def pid_path(self) -> Path:
        """The pid of the java process this runner started."""
        return self.home / "kafka.pid"


def node_properties(
    node: Node, nodes: Sequence[Node], host: str, security: Sequence[str] | None = None
) -> str:
    """A combined broker and controller on loopback. On three nodes or more, internal topics
    and new topics are replicated three times and need two in-sync replicas.

    With ``security`` (``ridestream.kafka.security.node_security_properties``) the client
    listener is SASL_SSL and the controller listener TLS; without, both are plaintext.
    """
    client = "SASL_SSL" if security is not None else "PLAINTEXT"
    controller = "SSL" if security is not None else "PLAINTEXT"
    replicas = 3 if len(nodes) >= 3 else 1
    insync = 2 if replicas >= 3 else 1
    if len(nodes) == 1:
        quorum = f"controller.quorum.bootstrap.servers={host}:{node.controller_port}"
    else:
        quorum = "controller.quorum.voters=" + ",".join(
            f"{n.node_id}@{host}:{n.controller_port}" for n in nodes
        )
    return "\n".join(
        [
            "# Written by ridestream kafka start; edit the settings, not this file.",
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            quorum,
            f"listeners={client}://{host}:{node.port},CONTROLLER://{host}:{node.controller_port}",
            f"advertised.listeners={client}://{host}:{node.port},CONTROLLER://{host}:{node.controller_port}",
            "controller.listener.names=CONTROLLER",
            f"inter.broker.listener.name={client}",
            f"listener.security.protocol.map={client}:{client},CONTROLLER:{controller}",
            *(security or ()),
            f"log.dirs={node.data_dir}",
            "num.partitions=6",
            f"default.replication.factor={replicas}",
            f"min.insync.replicas={insync}",
            f"offsets.topic.replication.factor={replicas}",
            "offsets.topic.num.partitions=10",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={insync}",
            "transaction.state.log.num.partitions=10",
            f"share.coordinator.state.topic.replication.factor={replicas}",
            f"share.coordinator.state.topic.min.isr={insync}",
            "group.initial.rebalance.delay.ms=0",
            # Topics are created on purpose (ridestream topics create), never by a typo.
            "auto.create.topics.enable=false",
            "",
        ]
    )


def wait_exit(pid: int, timeout_s: float) -> bool:
    """True once the process is gone (reaped, missing or a zombie) within the timeout."""
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
        if Path(f"/proc/{pid}/stat").exists() and b") Z " in Path(f"/proc/{pid}/stat").read_bytes():
            return True  # a zombie of some other parent: it is dead
        time.sleep(0.1)
    return False
