"""``ridestream decide``, ``evaluate report`` and ``rides show``: the decision service and what
its store knows.

Registered through the ``ridestream.commands`` entry points. The service modules are imported
when a command runs, not when the root command starts: ``ridestream --help`` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ridestream.cli.common import echo_json, service_settings, settings, stop_on_signals
from ridestream.exceptions import RidestreamError
from ridestream.store.decisions import DecisionStore

evaluate_app = typer.Typer(help="Online evaluation of the models.", no_args_is_help=True)
rides_app = typer.Typer(help="What the decision store knows of rides.", no_args_is_help=True)


def decide(
    instance_id: Annotated[
        str | None, typer.Option(help="Stable id of this replica (its transactional id).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve /metrics on 127.0.0.1:PORT.")
    ] = None,
) -> None:
    """Run the decision service until SIGTERM/SIGINT: join, decide, store, evaluate, watch drift."""
    from decision_service.service import DecisionService

    current = service_settings("decisions", instance_id=instance_id, metrics_port=metrics_port)
    service = DecisionService(current)
    try:
        service.run(stop_on_signals())
    finally:
        service.close()


@evaluate_app.command("report")
def evaluate_report(
    plot: Annotated[
        Path | None, typer.Option(help="Write the error-over-time plot (PNG) here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Online MAE/RMSE per target and model version (window and total), and promotion advice."""
    from decision_service.evaluation import report

    current = settings()
    store = DecisionStore(current.decisions.resolved_store_url)
    try:
        result = report(store, current, plot)
    finally:
        store.close()
    if as_json:
        echo_json(result)
        return
    print_report(result)
    if plot is not None:
        typer.echo(f"plot: {result['plot']}")


def print_report(result: dict[str, Any]) -> None:
    """The evaluation report as a table, the challengers' verdicts and the store's counts."""
    typer.echo(
        f"{'target':<9} {'model':<22} {'version':>7} {'role':<10} {'scope':<7} "
        f"{'rides':>7} {'MAE':>8} {'RMSE':>8}"
    )
    for scope in ("window", "total"):
        for row in result[scope]:
            typer.echo(
                f"{row['target']:<9} {row['model_name']:<22} {row['model_version']:>7} "
                f"{row['role']:<10} {scope:<7} {row['count']:>7} {row['mae']:>8.3f} "
                f"{row['rmse']:>8.3f}"
            )
    from decision_service.evaluation import comparison_text

    for comparison in result["comparisons"]:
        typer.echo(comparison_text(comparison))
    counts = result["counts"]
    typer.echo(
        f"decisions {counts['decisions']} (partial {counts['partial_decisions']}), pending "
        f"{counts['pending']}, rides with ground truth {counts['actuals']}, "
        f"evaluated predictions {counts['evaluated']}"
    )


@rides_app.command("show")
def rides_show(ride_id: Annotated[str, typer.Argument(help="The ride's id.")]) -> None:
    """A ride's predictions, decision and ground truth from the decision store."""
    store = DecisionStore(settings().decisions.resolved_store_url)
    try:
        result = store.ride(ride_id)
    finally:
        store.close()
    if result is None:
        raise RidestreamError(f"the decision store knows no ride {ride_id!r}")
    echo_json(result.as_dict())


def register(app: typer.Typer) -> None:
    """Add ``decide``, ``evaluate`` and ``rides`` to the root command."""
    app.command()(decide)
    app.add_typer(evaluate_app, name="evaluate")
    app.add_typer(rides_app, name="rides")
