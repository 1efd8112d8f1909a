"""The monitoring files in deploy/ agree with what the services export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from consumers.metrics import PredictorMetrics
from decision_service.metrics import DecisionMetrics
from gateway.metrics import GatewayMetrics
from ridestream.contracts.events import TARGETS

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def exported_names() -> set[str]:
    """Every sample name the services can export (counters' _total, histograms' _bucket, ...)."""
    names: set[str] = set()
    for metrics in (PredictorMetrics("duration"), DecisionMetrics(), GatewayMetrics()):
        for family in metrics.registry.collect():
            names.add(family.name)
            names.update(
                f"{family.name}{suffix}"
                for suffix in ("_total", "_bucket", "_count", "_sum", "_info")
            )
    return names


def test_every_dashboard_query_uses_a_metric_the_services_export() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "ridestream.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bridestream_[a-z_]+", target["expr"])
    }
    assert used
    assert used <= exported_names(), used - exported_names()


def test_prometheus_scrapes_every_service_on_loopback() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"ridestream-predictor", "ridestream-decisions", "ridestream-gateway"}
    targets = [
        t for job in jobs.values() for group in job["static_configs"] for t in group["targets"]
    ]
    assert all(t.startswith("127.0.0.1:") for t in targets)
    # A predictor per target, the decision service and the gateway, each on its own port.
    assert len(targets) == len(set(targets)) == len(TARGETS) + 2
