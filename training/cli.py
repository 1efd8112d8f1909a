"""``ridestream train`` and ``ridestream kestra``: training, and the flow that retrains.

Registered through the ``ridestream.commands`` entry points. The training modules are imported
when a command runs, not when the root command starts: ``ridestream --help`` stays quick.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ridestream.cli.common import echo_json, settings
from ridestream.kestra import KestraClient
from ridestream.ml.tlc import month_file

if TYPE_CHECKING:
    from training.train import TrainResult

DEFAULT_TRAIN_MONTH = month_file("2023-01")
DEFAULT_VALID_MONTH = month_file("2023-02")
FLOW_FILE = Path(__file__).resolve().parent / "kestra" / "train-models.yml"

kestra_app = typer.Typer(help="The Kestra flow that retrains the models.", no_args_is_help=True)


def train(
    targets: Annotated[
        str, typer.Option(help="Comma-separated: duration,cost,tip,simple.")
    ] = "duration,cost,tip,simple",
    train_month: Annotated[
        list[Path] | None,
        typer.Option(
            exists=True, dir_okay=False, help="TLC month to learn from (repeat for several)."
        ),
    ] = None,
    valid_month: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="TLC month to validate on.")
    ] = DEFAULT_VALID_MONTH,
    history_from: Annotated[
        str | None,
        typer.Option(
            help="Also train on every earlier TLC month file (green_tripdata_YYYY-MM.parquet) "
            "beside the first training month, from this YYYY-MM on.",
        ),
    ] = None,
    refit: Annotated[
        bool,
        typer.Option(
            help="Serve the recipe refitted on the validation month too (its figures are those of "
            "its twin trained without it). What the monthly flow does."
        ),
    ] = False,
    backtest: Annotated[
        bool,
        typer.Option(
            help="Instead of training: the rolling-origin backtest over the training and "
            "validation months (nothing registered)."
        ),
    ] = False,
    output: Annotated[
        Path | None, typer.Option(dir_okay=False, help="Also write the results as JSON here.")
    ] = None,
    sample: Annotated[
        int | None, typer.Option(min=100, help="Train on a random sample of N rides per month.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Train, log to MLflow, register, and gate @champion / @challenger (or --backtest)."""
    from training.report import backtest_run, train_table
    from training.train import train_models

    names = [t.strip() for t in targets.split(",") if t.strip()]
    months = list(train_month or [DEFAULT_TRAIN_MONTH])
    if history_from is not None:
        months = earlier_months(months[0], history_from) + months
    if backtest:
        scores, text = backtest_run(
            settings(), names, [*months, valid_month], sample=sample, progress=progress
        )
        payload: Any = [s.as_dict() for s in scores]
    else:
        results = train_models(
            settings(), names, months, valid_month, sample=sample, progress=progress, refit=refit
        )
        report_to_kestra(results)
        payload, text = [r.as_dict() for r in results], train_table(results)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(payload, indent=2, default=str))
    if as_json:
        echo_json(payload)
    else:
        typer.echo(text)


def earlier_months(first: Path, since: str) -> list[Path]:
    """The TLC month files beside ``first`` from month ``since`` up to (not including) its own."""
    own = first.stem.rsplit("_", 1)[-1]
    found = []
    for path in sorted(first.parent.glob("green_tripdata_*.parquet")):
        month = path.stem.rsplit("_", 1)[-1]
        if since <= month < own:
            found.append(path)
    return found


def report_to_kestra(results: Sequence[TrainResult]) -> None:
    """Inside a Kestra task, hand the results back as outputs and metrics (kestra package)."""
    if "KESTRA_EXECUTION_ID" not in os.environ and not os.environ.get("RIDESTREAM_KESTRA_OUTPUTS"):
        return
    from kestra import Kestra  # type: ignore[import-untyped]

    Kestra.outputs({"models": [r.as_dict() for r in results]})
    for r in results:
        Kestra.counter(f"{r.model_name}.valid_rmse", r.metrics["rmse"], {"version": r.version})


def _kestra_client() -> KestraClient:
    return KestraClient(settings().kestra)


@kestra_app.command("deploy")
def kestra_deploy(
    flow_file: Annotated[
        Path | None, typer.Option("--file", exists=True, dir_okay=False, help="Flow YAML.")
    ] = None,
) -> None:
    """Create or update the training flow on the Kestra server."""
    with _kestra_client() as client:
        flow = client.deploy_flow((flow_file or FLOW_FILE).read_text())
    typer.echo(f"deployed {flow.get('namespace')}.{flow.get('id')} revision {flow.get('revision')}")


def _echo_logs(client: KestraClient, execution_id: str) -> None:
    for entry in client.logs(execution_id):
        typer.echo(f"  [{entry.get('level')}] {entry.get('taskId') or '-'}: {entry.get('message')}")


@kestra_app.command("run")
def kestra_run(
    month: Annotated[str, typer.Option(help="TLC month to train on.")] = "2023-01",
    valid_month: Annotated[str, typer.Option(help="TLC month to validate on.")] = "2023-02",
    targets: Annotated[
        str, typer.Option(help="Comma-separated targets.")
    ] = "duration,cost,tip,simple",
    reason: Annotated[
        str, typer.Option(help="Why (kept as an input of the execution).")
    ] = "on demand",
    wait: Annotated[bool, typer.Option(help="Wait for the execution to end.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 3600.0,
) -> None:
    """Trigger the training flow with inputs; with --wait, follow it to the end (exit 1 unless it succeeds)."""
    config = settings().kestra
    with _kestra_client() as client:
        execution = client.run(
            config.namespace, config.flow_id,
            {"month": month, "valid_month": valid_month, "targets": targets, "reason": reason},
        )  # fmt: skip
        typer.echo(f"execution {execution.id} {execution.state}")
        if not wait:
            return
        execution = client.wait(execution.id, timeout)
        _echo_logs(client, execution.id)
    typer.echo(f"execution {execution.id} {execution.state}")
    if execution.state not in ("SUCCESS", "WARNING"):
        raise typer.Exit(1)


@kestra_app.command("status")
def kestra_status(
    execution_id: Annotated[str, typer.Argument(help="The execution to look at.")],
    logs: Annotated[bool, typer.Option(help="Print its logs too.")] = False,
) -> None:
    """The state (and optionally the logs) of an execution."""
    with _kestra_client() as client:
        execution = client.execution(execution_id)
        typer.echo(
            f"execution {execution.id} {execution.namespace}.{execution.flow_id}: {execution.state}"
        )
        if logs:
            _echo_logs(client, execution_id)


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``kestra`` to the root command."""
    app.command()(train)
    app.add_typer(kestra_app, name="kestra")
