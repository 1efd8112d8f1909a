"""``ridestream predict``: one target's exactly-once predictor.

Registered through the ``ridestream.commands`` entry points. The service module is imported when
the command runs, not when the root command starts: ``ridestream --help`` stays quick.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ridestream.cli.common import service_settings, stop_on_signals


def predict(
    target: Annotated[str, typer.Option(help="duration, cost or tip.")],
    instance_id: Annotated[
        str | None, typer.Option(help="Stable id of this replica (fences its predecessor).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve /metrics on 127.0.0.1:PORT.")
    ] = None,
) -> None:
    """Run one target's exactly-once predictor until SIGTERM/SIGINT."""
    from consumers.predictor import Predictor

    settings = service_settings("predictor", instance_id=instance_id, metrics_port=metrics_port)
    Predictor(settings, target).run(stop_on_signals())


def register(app: typer.Typer) -> None:
    """Add ``predict`` to the root command."""
    app.command()(predict)
