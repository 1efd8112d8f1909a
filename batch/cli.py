"""``ridestream batch score``: offline scoring of a whole file.

Registered through the ``ridestream.commands`` entry points. The service module is imported when
the command runs, not when the root command starts: ``ridestream --help`` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ridestream.cli.common import settings

batch_app = typer.Typer(help="Offline scoring.", no_args_is_help=True)


@batch_app.command("score")
def batch_score(
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            exists=True,
            dir_okay=False,
            help="Parquet: a TLC file or ride columns.",
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", dir_okay=False, help="Parquet to write.")
    ],
    chunk_rows: Annotated[
        int, typer.Option(min=1, help="Rows per chunk (memory stays flat).")
    ] = 50_000,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Score a whole file with the champion models, chunk by chunk."""
    from batch.score import score_file

    summary = score_file(settings(), input, output, chunk_rows=chunk_rows, progress=progress)
    versions = ", ".join(f"{t} v{v}" for t, v in summary.versions.items())
    typer.echo(
        f"scored {summary.rows} rides in {summary.chunks} chunk(s) into {summary.output} ({versions})"
    )


def register(app: typer.Typer) -> None:
    """Add ``batch`` to the root command."""
    app.add_typer(batch_app, name="batch")
