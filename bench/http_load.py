"""HTTP servers under load for the benchmarks: start one and wait for it, stop its process group,
drive it with wrk and read wrk's report."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.harness import cpu_seconds

START_TIMEOUT_S = 180.0  # both servers load the model from the registry before answering
WRK_TIMEOUT = "10s"  # wrk's default (2 s) would count slow answers as errors, hiding the tail
_DURATION = re.compile(r"^([\d.]+)(us|ms|s|m)$")
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


# -- servers ----------------------------------------------------------------------------------------
def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server(
    name: str, command: list[str], env: dict[str, str], ready_url: str, logs: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server until the block ends; yield it once ``ready_url`` answers 200."""
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        # A session of its own: mlflow forks uvicorn, and stopping must reach the whole group.
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}):\n{_tail(log)}")
            try:
                if httpx.get(ready_url, timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name} did not answer within {START_TIMEOUT_S} s:\n{_tail(log)}"
                )
            time.sleep(0.5)
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it when it lingers; always reap it."""
    for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def answer(response: httpx.Response, ok: tuple[int, ...] = (200,)) -> Any:
    """A server's JSON answer; anything else stops the benchmark before it measures errors."""
    if response.status_code not in ok:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code}: {response.text[:500]}"
        )
    return response.json()


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# -- load -------------------------------------------------------------------------------------------
def lua_script(method: str, body: dict[str, Any] | None, folder: Path) -> Path:
    """A wrk script sending one fixed request (a level-1 long string: JSON may hold ``]]``)."""
    path = folder / f"wrk-{time.monotonic_ns()}.lua"
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        lines += [
            'wrk.headers["Content-Type"] = "application/json"',
            f"wrk.body = [=[{json.dumps(body)}]=]",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _ms(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNIT_MS[match[2]]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, the latency percentiles and the errors of wrk's ``--latency`` report."""
    percentiles = {
        f"p{q}_ms": round(_ms(value), 3)
        for q, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.MULTILINE)
    }
    requests = re.search(r"(\d+) requests in ([\d.]+\w+),", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if requests is None or rps is None or len(percentiles) != 4:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return {
        "requests": int(requests[1]),
        "seconds": round(_ms(requests[2]) / 1000, 2),
        "requests_per_s": float(rps[1]),
        **percentiles,
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "socket_errors": sum(int(n) for n in sockets.groups()) if sockets else 0,
    }


def load(
    url: str,
    script: Path,
    args: argparse.Namespace,
    pid: int,
) -> dict[str, Any]:
    """A warm-up, then the measured wrk run, with the server tree's CPU time per request."""
    base = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "--timeout", WRK_TIMEOUT]
    base += ["-s", str(script)]
    subprocess.run([*base, "-d", f"{args.warmup}s", url], capture_output=True, check=True)
    load_before = os.getloadavg()[0]
    cpu_before = cpu_seconds(pid)
    done = subprocess.run(
        [*base, "-d", f"{args.seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = cpu_seconds(pid) - cpu_before
    result = parse_wrk(done.stdout)
    result["server_cpu_ms_per_request"] = round(cpu * 1000 / max(result["requests"], 1), 3)
    result["server_cpu_cores_busy"] = round(cpu / result["seconds"], 2)
    result["load_average_1m_before"] = round(load_before, 2)
    print(
        f"  {result['requests_per_s']:.0f} req/s, p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms, {result['server_cpu_ms_per_request']} CPU-ms/request",
        flush=True,
    )
    return result
