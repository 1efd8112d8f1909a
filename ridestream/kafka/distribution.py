"""Kafka's own distribution on this machine: a Java to run it, its jars from Maven Central."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from ridestream.kafka.exceptions import BrokerError

logger = logging.getLogger(__name__)

MIN_JAVA = 17
_JAVA_VERSION = re.compile(r'version "(?P<major>\d+)(?:\.(?P<minor>\d+))?')


def java_executable() -> Path:
    """``$JAVA_HOME/bin/java`` when JAVA_HOME is set, else ``java`` on the PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return Path(java_home) / "bin" / "java"
    found = shutil.which("java")
    if found is None:
        raise BrokerError(
            f"Java {MIN_JAVA}+ is needed to run Kafka and no `java` is on the PATH: install "
            "openjdk-17-jre-headless (apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
        )
    return Path(found)


def parse_java_major(version_output: str) -> int:
    """The major version from ``java -version`` output (``1.8.0_392`` → 8, ``17.0.15`` → 17)."""
    match = _JAVA_VERSION.search(version_output)
    if match is None:
        raise BrokerError(f"cannot read a Java version from: {version_output.strip()[:200]!r}")
    major = int(match["major"])
    return int(match["minor"] or 0) if major == 1 else major


def check_java(java: Path | None = None) -> int:
    """The major version of the Java that will run Kafka; BrokerError when it is too old."""
    java = java or java_executable()
    result = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False)
    major = parse_java_major(result.stderr + result.stdout)
    if major < MIN_JAVA:
        raise BrokerError(
            f"Kafka needs Java {MIN_JAVA}+, but {java} is Java {major}: install "
            "openjdk-17-jre-headless or point JAVA_HOME at a Java 17+ runtime"
        )
    return major


def fetch_jars(version: str, jars_dir: Path) -> Path:
    """Download Kafka ``version``'s jars from Maven Central into ``jars_dir`` once; later calls
    return the cache."""
    marker = jars_dir / f"kafka_2.13-{version}.jar"
    if marker.exists():
        return jars_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Maven (mvn) is needed once to fetch Kafka's jars from Maven Central: "
            "apt-get install maven (or copy the jars into " + str(jars_dir) + ")"
        )
    jars_dir.parent.mkdir(parents=True, exist_ok=True)
    logger.info("fetching Kafka %s jars into %s", version, jars_dir)
    with tempfile.TemporaryDirectory(dir=jars_dir.parent) as work:
        pom = Path(work) / "pom.xml"
        pom.write_bytes(resources.files("ridestream.kafka").joinpath("pom.xml").read_bytes())
        staged = Path(work) / "libs"
        result = subprocess.run(
            [
                mvn, "-q", "-B", "-f", str(pom),
                "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
                f"-DoutputDirectory={staged}", "-DincludeScope=runtime",
                f"-Dkafka.version={version}",
            ],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0 or not (staged / marker.name).exists():
            raise BrokerError(
                f"mvn could not fetch Kafka {version} from Maven Central "
                f"(exit {result.returncode}): {(result.stdout + result.stderr)[-1500:]}"
            )
        # Rename into place so a half-finished download never looks like a cache.
        if jars_dir.exists():
            shutil.rmtree(jars_dir)
        staged.rename(jars_dir)
    return jars_dir
