"""ridestream commands as real processes, the way an operator runs them: own log, own /metrics."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port


class ServiceProcess:
    """One `ridestream …` process, logging to ``<logs>/<name>.log``.

    A service (``replica=True``) gets ``--instance-id <name>`` and a /metrics port of its own.
    """

    def __init__(
        self, name: str, env: dict[str, str], logs: Path, *args: str, replica: bool = True
    ) -> None:
        self.name, self.port, self.log_path = name, free_port(), logs / f"{name}.log"
        self.replica = replica
        command = [str(Path(sys.executable).with_name("ridestream")), *args]
        if replica:
            command += ["--instance-id", name, "--metrics-port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    @property
    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def assigned(self, metric: str) -> int:
        """Partitions this replica holds, summed over topics (0 while /metrics does not answer)."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return 0
        return sum(int(float(v)) for v in re.findall(rf"^{metric}{{[^}}]*}} (\S+)$", text, re.M))

    def ready(self) -> bool:
        """The service's /readyz says it serves (a member of its group with its partitions)."""
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_started(self, timeout_s: float = 120) -> None:
        """Until the service is ready (its models loaded, its producer fenced, its partitions
        given); a process without a /metrics port until its loop says it started."""
        deadline = time.monotonic() + timeout_s
        while not (self.ready() if self.replica else " started" in self.log):
            assert self.process.poll() is None, self.log[-3000:]
            assert time.monotonic() < deadline, f"{self.name} did not start"
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM and wait; a process still running after a minute has its threads' stacks
        written to its log (py-spy), so the failing test shows where it hung, then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._dump_stacks()
                self.process.kill()
                self.process.wait(timeout=30)

    def _dump_stacks(self) -> None:
        py_spy = Path(sys.executable).with_name("py-spy")
        with self.log_path.open("ab") as log:
            log.write(b"\n-- still running 60 s after SIGTERM; its threads (py-spy dump):\n")
            log.flush()
            subprocess.run(
                [str(py_spy), "dump", "--pid", str(self.process.pid)],
                stdout=log, stderr=subprocess.STDOUT, timeout=60, check=False,
            )  # fmt: skip
