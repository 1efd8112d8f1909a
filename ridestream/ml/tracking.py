"""MLflow wiring: every process points tracking and registry at the same store.

The embedded default is a SQLite file with artifacts on local disk (no server); setting
``RIDESTREAM_MLFLOW__TRACKING_URI`` points everything at an ``mlflow server`` instead.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ridestream.settings import MlflowSettings

logger = logging.getLogger(__name__)

# This workplace has no internet and the project wants no phoning home from its processes.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


def mlflow_client(settings: MlflowSettings) -> Any:
    """Point mlflow at the configured store (creating the local one) and return a client."""
    import mlflow
    from mlflow import MlflowClient

    if settings.tracking_uri is None:
        settings.home.mkdir(parents=True, exist_ok=True)
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
    uri = settings.resolved_tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: Any, settings: MlflowSettings) -> str:
    """The id of the project's experiment, created with its artifact location when missing."""
    experiment = client.get_experiment_by_name(settings.experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = settings.artifact_root.as_uri() if settings.tracking_uri is None else None
    return str(client.create_experiment(settings.experiment, artifact_location=location))
