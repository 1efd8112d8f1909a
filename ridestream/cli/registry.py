"""``ridestream models``, ``mlflow`` and ``schemas``: the model registry and the contracts."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Annotated

import typer

from ridestream.cli.common import settings
from ridestream.contracts.compatibility import check_store
from ridestream.contracts.schemas import load_store
from ridestream.ml.features import FEATURE_SET
from ridestream.ml.registry import (
    MODEL_NAMES,
    list_versions,
    outdated_champions,
    promote,
    rollback,
)
from ridestream.ml.tracking import mlflow_client

models_app = typer.Typer(
    help="The model registry: versions, aliases, promotion.", no_args_is_help=True
)
mlflow_app = typer.Typer(help="The MLflow tracking store.", no_args_is_help=True)
schemas_app = typer.Typer(help="The Avro contracts in schemas/.", no_args_is_help=True)


@models_app.command("list")
def models_list() -> None:
    """Every registered version of the project's models, with aliases."""
    client = mlflow_client(settings().mlflow)
    for name in MODEL_NAMES.values():
        for v in list_versions(client, name):
            aliases = ",".join(v.aliases) or "-"
            typer.echo(f"{name:<22} v{v.version:<4} {aliases:<20} {v.tags.get('gate', '')}")


@models_app.command("check")
def models_check() -> None:
    """Exit 1 unless every model has a champion trained on today's feature set."""
    outdated = outdated_champions(mlflow_client(settings().mlflow), FEATURE_SET)
    if outdated:
        typer.echo(f"no champion on feature set {FEATURE_SET}: {', '.join(outdated)}")
        raise typer.Exit(1)
    typer.echo(f"every model has a champion on feature set {FEATURE_SET}")


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Registered model, e.g. ride-duration.")],
    version: Annotated[str, typer.Argument(help="The version to make @champion.")],
) -> None:
    """Make a version the champion (the running services swap to it)."""
    previous = promote(mlflow_client(settings().mlflow), name, version)
    typer.echo(f"{name}@champion = v{version} (was {previous and 'v' + previous})")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Registered model, e.g. ride-duration.")],
) -> None:
    """Give @champion back to the version the current champion replaced."""
    was, now = rollback(mlflow_client(settings().mlflow), name)
    typer.echo(f"{name}@champion = v{now} (rolled back from v{was})")


@mlflow_app.command("ui")
def mlflow_ui(port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000) -> None:
    """Run `mlflow server` on 127.0.0.1 over the project's store, to look at runs and models."""
    config = settings().mlflow
    mlflow_client(config)  # creates the local store if needed
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", config.resolved_tracking_uri,
    ]  # fmt: skip
    if config.tracking_uri is None:
        command += ["--default-artifact-root", config.artifact_root.as_uri()]
    typer.echo(f"MLflow UI at http://127.0.0.1:{port} (Ctrl+C stops it)")
    raise typer.Exit(subprocess.call(command, env=os.environ.copy()))


@schemas_app.command("check")
def schemas_check() -> None:
    """Every schema version is backward and forward compatible with the one before it."""
    store = load_store(settings().schemas_dir)
    reports = check_store(store)
    for schema in store:
        typer.echo(
            f"{schema.name} v{schema.version}  fingerprint={schema.fingerprint.hex()}  {schema.path.name}"
        )
    failed = False
    for report in reports:
        verdict = "ok" if report.ok else "INCOMPATIBLE"
        typer.echo(f"{report.name} v{report.older} -> v{report.newer}: {verdict}")
        for problem in report.backward:
            typer.echo(f"  backward (v{report.newer} reading v{report.older} data): {problem}")
        for problem in report.forward:
            typer.echo(f"  forward (v{report.older} reading v{report.newer} data): {problem}")
        failed |= not report.ok
    typer.echo(f"{len(reports)} version step(s) checked across {len(store.names())} record type(s)")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add these commands to the root command."""
    app.add_typer(models_app, name="models")
    app.add_typer(mlflow_app, name="mlflow")
    app.add_typer(schemas_app, name="schemas")
