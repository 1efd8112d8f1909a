"""Gateway throughput and latency under wrk, side by side with ``mlflow models serve``.

Same machine, same run, same load: ``wrk`` (one thread, ``--connections`` keep-alive connections,
a warm-up, then ``--seconds`` measured with ``--latency``) POSTs one fixed ride, one row per
request, to each server in turn, never both at once:

- ours, synchronous: ``POST /v1/predictions`` of ``ridestream gateway`` (one uvicorn process),
  its model compiled by lleaves (``--backend``, as the stream benchmarks run the predictors);
- ours, opted in: the same with ``"enhanced": true`` — the ride is also published to Kafka (topics
  under a prefix of this run's own, dropped afterwards) and each answer waits for the broker's ack;
- theirs: ``POST /invocations`` of ``mlflow models serve --env-manager local --workers 1`` with the
  same registered ``ride-duration-simple@champion``. It has no feature function, so it is sent the
  model's own feature row (built here once by ``build_features``): it does less work per request
  than the gateway, which validates a raw ride and builds its features on every request.

Both servers run on the same uvicorn from the same environment (with uvloop and httptools, which
uvicorn picks when installed). Both answers are checked to agree before any load. Also measured: ``GET /healthz`` of the gateway
(what the web stack alone costs per request, the ceiling of any endpoint in that process), the CPU
time each server's process tree spends per request (steadier than requests/s on a shared machine),
and where our synchronous path spends its time, stage by stage, in this process.

    python -m bench.gateway [--seconds 20] [--connections 8] [--skip-mlflow] [--skip-enhanced] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from bench.common import broker_for, drop_prefix, fresh_prefix, machine, write_results
from bench.harness import compile_champions, ensure_champions, tree
from bench.http_load import WRK_TIMEOUT, answer, free_port, load, lua_script, server
from gateway.predictions import predict_duration
from gateway.schemas import EXAMPLE_RIDE, RideRequest
from ridestream.ml.features import FEATURES, RIDE_COLUMNS, build_features
from ridestream.ml.models import AliasedModel
from ridestream.ml.registry import CHAMPION, MODEL_NAMES
from ridestream.ml.tracking import mlflow_client
from ridestream.settings import Settings

MODEL = MODEL_NAMES["simple"]
RIDE = EXAMPLE_RIDE
TARGET_THROUGHPUT_RATIO = 10.0  # ours / mlflow requests/s, at least
TARGET_P99_RATIO = 0.1  # ours / mlflow p99, at most
SAMPLES = 5  # opted-in answers read back one by one after the run

_BIN = Path(sys.executable).parent


# -- the sides --------------------------------------------------------------------------------------
def enhanced_counts(metrics_text: str) -> dict[str, float]:
    """``ridestream_gateway_enhanced_total`` per status from the gateway's /metrics."""
    pattern = r'^ridestream_gateway_enhanced_total\{status="(\w+)"\}\s+([\d.e+]+)$'
    return {
        status: float(value) for status, value in re.findall(pattern, metrics_text, re.MULTILINE)
    }


def run_gateway(
    settings: Settings, args: argparse.Namespace, logs: Path, with_enhanced: bool
) -> dict[str, Any]:
    """Our gateway: healthz (the stack alone), the synchronous path, then the opted-in path."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "RIDESTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "RIDESTREAM_MODELS__BACKEND": settings.models.backend,
    }
    command = [str(_BIN / "ridestream"), "gateway", "--port", str(port)]
    results: dict[str, Any] = {
        "workers": 1,
        "server": "ridestream gateway (uvicorn, 1 process)",
        "model_backend": settings.models.backend,
    }
    with server("gateway", command, env, f"{base}/healthz", logs) as process:
        results["processes"] = len(tree(process.pid))
        # 503 is an answer too (no broker: the opted-in run then reports "unavailable")
        results["readyz"] = answer(httpx.get(f"{base}/readyz", timeout=10), ok=(200, 503))
        results["answer"] = answer(httpx.post(f"{base}/v1/predictions", json=RIDE, timeout=10))
        print("gateway GET /healthz (the web stack alone) ...", flush=True)
        results["healthz"] = load(
            f"{base}/healthz", lua_script("GET", None, logs), args, process.pid
        )
        print("gateway POST /v1/predictions (synchronous) ...", flush=True)
        results["sync"] = load(
            f"{base}/v1/predictions", lua_script("POST", RIDE, logs), args, process.pid
        )
        if with_enhanced:
            print("gateway POST /v1/predictions (enhanced: true) ...", flush=True)
            opted_in = {**RIDE, "enhanced": True}
            run = load(
                f"{base}/v1/predictions", lua_script("POST", opted_in, logs), args, process.pid
            )
            statuses = [
                httpx.post(f"{base}/v1/predictions", json=opted_in, timeout=10)
                .json()
                .get("enhanced", {})
                .get("status")
                for _ in range(SAMPLES)
            ]
            counts = enhanced_counts(httpx.get(f"{base}/metrics", timeout=10).text)
            total = sum(counts.values())
            run["sampled_statuses"] = statuses
            run["enhanced_total_by_status"] = counts  # warm-up, run and samples
            run["pending_share"] = round(counts.get("pending", 0.0) / total, 5) if total else 0.0
            results["enhanced"] = run
    return results


def mlflow_row(settings: Settings) -> tuple[dict[str, Any], float]:
    """The ride as the model's own one-row input, and the model's answer to it (in this process)."""
    from mlflow.models import get_model_info

    client = mlflow_client(settings.mlflow)
    info = get_model_info(f"models:/{MODEL}@{CHAMPION}")
    if info.signature is None:
        raise RuntimeError(f"{MODEL}@{CHAMPION} was logged without a signature")
    names = list(info.signature.inputs.input_names())
    model = AliasedModel(client, MODEL, CHAMPION, settings.models).current
    assert model is not None, "AliasedModel raises when the alias is missing"
    features = build_features(ride_frame())
    row = features[0, [FEATURES.index(name) for name in names]]
    body = {"dataframe_split": {"columns": names, "data": [[float(v) for v in row]]}}
    return body, float(model.predict(features)[0])


def ride_frame() -> pd.DataFrame:
    """The benchmark's ride as the one-row input of ``build_features`` (missing = None)."""
    values = {**RIDE, "pickup_time": pd.Timestamp(RIDE["pickup_time"])}
    return pd.DataFrame({name: [values.get(name)] for name in RIDE_COLUMNS})


def run_mlflow(settings: Settings, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """``mlflow models serve`` of the same champion, one worker, under the same load."""
    body, expected = mlflow_row(settings)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [
        str(_BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@{CHAMPION}",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {
        **os.environ,
        # mlflow starts its server as a bare `uvicorn` command: it must be found on PATH.
        "PATH": f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": settings.mlflow.resolved_tracking_uri,
        "MLFLOW_REGISTRY_URI": settings.mlflow.resolved_tracking_uri,
    }
    results: dict[str, Any] = {
        "workers": 1,
        "server": "mlflow models serve --env-manager local --workers 1 (uvicorn)",
        "request": body,
    }
    with server("mlflow", command, env, f"{base}/ping", logs) as process:
        results["processes"] = len(tree(process.pid))
        results["answer"] = answer(httpx.post(f"{base}/invocations", json=body, timeout=10))
        predicted = float(results["answer"]["predictions"][0])
        if abs(predicted - expected) > 1e-6:
            raise RuntimeError(f"mlflow answers {predicted}, the model here {expected}")
        print("mlflow models serve POST /invocations ...", flush=True)
        results["sync"] = load(
            f"{base}/invocations", lua_script("POST", body, logs), args, process.pid
        )
    return results


# -- where our time goes ----------------------------------------------------------------------------
def stage_costs(settings: Settings, rounds: int = 2000) -> dict[str, float]:
    """µs per request of each stage of our synchronous path, alone in this process."""
    model = AliasedModel(
        mlflow_client(settings.mlflow), MODEL, CHAMPION, settings.models
    ).wait_compiled()
    assert model is not None, "AliasedModel raises when the alias is missing"
    raw = json.dumps(RIDE).encode()
    ride = RideRequest.model_validate_json(raw)
    pickup = ride.pickup_time
    assert pickup is not None
    frame = ride_frame()
    features = build_features(frame)

    def timed(work: Callable[[], object]) -> float:
        for _ in range(rounds // 10):  # warm caches (holiday table, zone table) first
            work()
        begin = time.perf_counter()
        for _ in range(rounds):
            work()
        return round((time.perf_counter() - begin) / rounds * 1e6, 1)

    return {
        "parse_and_validate_us": timed(lambda: RideRequest.model_validate_json(raw)),
        "one_row_dataframe_us": timed(ride_frame),
        "build_features_us": timed(lambda: build_features(frame)),
        "predict_us": timed(lambda: model.predict(features)),
        "predict_duration_total_us": timed(lambda: predict_duration(model, ride, pickup)),
    }


# -- the run ----------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    """Versions of what serves and what loads."""
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    names = ("mlflow", "fastapi", "uvicorn", "uvloop", "httptools", "pydantic", "lightgbm",
             "lleaves", "pandas", "numpy")  # fmt: skip
    return {
        **{name: version(name) for name in names},
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0],
    }


def ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Ours against mlflow's, and whether the targets are met (error-free runs only)."""
    throughput = ours["requests_per_s"] / theirs["requests_per_s"]
    p99 = ours["p99_ms"] / theirs["p99_ms"]
    clean = all(r["non_2xx"] == 0 and r["socket_errors"] == 0 for r in (ours, theirs))
    return {
        "throughput_ratio": round(throughput, 3),
        "p99_ratio": round(p99, 4),
        "cpu_per_request_ratio": round(
            ours["server_cpu_ms_per_request"] / theirs["server_cpu_ms_per_request"], 3
        ),
        "target_throughput_ratio": TARGET_THROUGHPUT_RATIO,
        "target_p99_ratio": TARGET_P99_RATIO,
        "meets_throughput_target": clean and throughput >= TARGET_THROUGHPUT_RATIO,
        "meets_p99_target": clean and p99 <= TARGET_P99_RATIO,
        "error_free": clean,
    }


def print_table(results: dict[str, Any]) -> None:
    """One line per measured endpoint."""
    rows = [
        ("gateway GET /healthz", results["gateway"]["healthz"]),
        ("gateway sync", results["gateway"]["sync"]),
    ]
    if "enhanced" in results["gateway"]:
        rows.append(("gateway enhanced", results["gateway"]["enhanced"]))
    if "mlflow" in results:
        rows.append(("mlflow models serve", results["mlflow"]["sync"]))
    print(f"{'':22} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU-ms/req':>11} {'errors':>7}")
    for name, r in rows:
        errors = r["non_2xx"] + r["socket_errors"]
        print(
            f"{name:22} {r['requests_per_s']:8.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{r['server_cpu_ms_per_request']:11.3f} {errors:7d}"
        )
    if "comparison" in results:
        c = results["comparison"]
        print(
            f"throughput ours/mlflow {c['throughput_ratio']:.2f} (target >= {TARGET_THROUGHPUT_RATIO:g}: "
            f"{'met' if c['meets_throughput_target'] else 'missed'}); p99 ours/mlflow "
            f"{c['p99_ratio']:.3f} (target <= {TARGET_P99_RATIO:g}: "
            f"{'met' if c['meets_p99_target'] else 'missed'})"
        )
    if "enhanced" in results["gateway"]:
        e = results["gateway"]["enhanced"]
        print(f"opted in: pending share {e['pending_share']:.4f}, samples {e['sampled_statuses']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=20, help="measured seconds per endpoint")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured seconds before each")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--skip-mlflow", action="store_true", help="measure the gateway only")
    parser.add_argument("--skip-enhanced", action="store_true", help="no Kafka, no opted-in run")
    parser.add_argument("--quick", action="store_true", help="5 s runs after 1 s of warm-up")
    parser.add_argument(
        "--backend",
        default="lleaves",
        choices=["booster", "lleaves"],
        help="the gateway's model backend (mlflow serves its own pyfunc either way)",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup = 5, 1
    if shutil.which("wrk") is None:
        raise SystemExit("bench.gateway needs wrk: apt-get install wrk (scripts/system-deps.sh)")

    settings = Settings()
    settings = settings.model_copy(
        update={"models": settings.models.model_copy(update={"backend": args.backend})}
    )
    ensure_champions(settings, [MODEL])
    compile_champions(settings, [MODEL], args.backend)  # the gateway then serves it compiled
    with_enhanced = not args.skip_enhanced
    if with_enhanced:
        broker_for(settings)
        settings = fresh_prefix(settings, "gateway")
    results: dict[str, Any] = {
        "benchmark": "gateway",
        "command": "python -m bench.gateway " + " ".join(sys.argv[1:]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "versions": versions(),
        "load": {
            "generator": "wrk",
            "threads": args.threads,
            "connections": args.connections,
            "warmup_s": args.warmup,
            "seconds": args.seconds,
            "timeout": WRK_TIMEOUT,
            "ride": RIDE,
        },
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-gateway-") as folder:
            results["gateway"] = run_gateway(settings, args, Path(folder), with_enhanced)
            if not args.skip_mlflow:
                results["mlflow"] = run_mlflow(settings, args, Path(folder))
    finally:
        if with_enhanced:
            drop_prefix(settings)
    if "mlflow" in results:
        results["comparison"] = ratios(results["gateway"]["sync"], results["mlflow"]["sync"])
        ours = results["gateway"]["answer"]["duration_minutes"]  # rounded to 3 decimals
        results["comparison"]["same_prediction"] = (
            abs(ours - results["mlflow"]["answer"]["predictions"][0]) < 1e-3
        )
    results["our_stage_costs_us"] = stage_costs(settings)
    path = write_results("gateway", results)
    print_table(results)
    print(f"results in {path}")


if __name__ == "__main__":
    main()
