"""``ridestream replay``: a TLC month as live ride events.

Registered through the ``ridestream.commands`` entry points. The service module is imported when
the command runs, not when the root command starts: ``ridestream --help`` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ridestream.cli.common import settings


def replay(
    input: Annotated[
        Path, typer.Option("--input", "-i", exists=True, dir_okay=False, help="TLC parquet file.")
    ],
    rate: Annotated[
        float, typer.Option(min=0, help="Rides per second; 0 = as fast as possible.")
    ] = 500.0,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N rides (pickup order).")
    ] = None,
    completions: Annotated[bool, typer.Option(help="Also publish RideCompleted.")] = True,
    id_prefix: Annotated[
        str | None, typer.Option(help="Ride id prefix (default: the file's month).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Replay a TLC month as live RideStarted / RideCompleted events."""
    from producers.replay import replay as run_replay

    summary = run_replay(
        settings(), input, rate, limit,
        completions=completions, id_prefix=id_prefix, progress=progress,
    )  # fmt: skip
    typer.echo(
        f"published {summary.rides_started} RideStarted and {summary.rides_completed} RideCompleted "
        f"in {summary.elapsed_s:.1f}s ({summary.achieved_rate:.0f} rides/s, target {summary.target_rate:g}; "
        f"clock x{summary.speedup:g}); refused by the contract and skipped: "
        f"{summary.invalid_started} rides, {summary.invalid_completed} completions"
    )


def register(app: typer.Typer) -> None:
    """Add ``replay`` to the root command."""
    app.command()(replay)
