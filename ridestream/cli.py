"""The ``ridestream`` command: one entry point for operators, the demo and CI."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from ridestream.exceptions import RidestreamError
from ridestream.settings import Settings, get_settings, redact

app = typer.Typer(
    help="ridestream: streaming inference for ride-hailing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
kafka_app = typer.Typer(
    help="The local single-node Kafka broker (KRaft, 127.0.0.1).", no_args_is_help=True
)
topics_app = typer.Typer(help="The project's topics.", no_args_is_help=True)
schemas_app = typer.Typer(help="The Avro contracts in schemas/.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")

logger = logging.getLogger("ridestream.cli")


def _settings() -> Settings:
    return get_settings()


def _echo_json(payload: object) -> None:
    typer.echo(json.dumps(payload, default=str, sort_keys=False))


@app.callback()
def _configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    level = (
        logging.DEBUG if verbose else getattr(logging, _settings().log_level.upper(), logging.INFO)
    )
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


# -- kafka -------------------------------------------------------------------------------------
@kafka_app.command("fetch")
def kafka_fetch() -> None:
    """Download Kafka's jars from Maven Central into the cache (once)."""
    from ridestream.kafka.local import LocalKafka

    typer.echo(LocalKafka(_settings().local_kafka).fetch_jars())


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the local broker, or reuse the one already running; returns when it answers."""
    from ridestream.kafka.local import LocalKafka

    status = LocalKafka(_settings().local_kafka).start()
    typer.echo(
        f"Kafka {status.version} answers at {status.bootstrap} (pid {status.pid}, home {status.home})"
    )


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the local broker cleanly."""
    from ridestream.kafka.local import LocalKafka

    stopped = LocalKafka(_settings().local_kafka).stop()
    typer.echo("Kafka stopped" if stopped else "no local Kafka was running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Whether the local broker runs and answers; exit 1 when nothing answers."""
    from ridestream.kafka.local import LocalKafka

    status = LocalKafka(_settings().local_kafka).status()
    typer.echo(
        f"bootstrap={status.bootstrap} running={status.running} pid={status.pid} "
        f"answers={status.answers} home={status.home}"
    )
    if not status.answers:
        raise typer.Exit(1)


# -- topics ------------------------------------------------------------------------------------
@topics_app.command("create")
def topics_create(
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Default: RIDESTREAM_TOPICS__PARTITIONS.")
    ] = None,
) -> None:
    """Create the topics of the design (existing ones are left as they are)."""
    from ridestream.kafka.clients import make_admin
    from ridestream.kafka.topics import create_project_topics

    settings = _settings()
    for name, created in create_project_topics(settings, make_admin(settings), partitions).items():
        typer.echo(f"{name}: {'created' if created else 'exists'}")


@topics_app.command("list")
def topics_list() -> None:
    """The project's topics with partition and message counts."""
    from ridestream.kafka.topics import summarize_topics

    settings = _settings()
    for summary in summarize_topics(settings, list(settings.topics.names().values())):
        typer.echo(
            f"{summary.name:<32} partitions={summary.partitions:<3} messages={summary.messages}"
        )


# -- schemas -----------------------------------------------------------------------------------
@schemas_app.command("check")
def schemas_check() -> None:
    """Every schema version is backward and forward compatible with the one before it."""
    from ridestream.compatibility import check_store
    from ridestream.schemas import load_store

    store = load_store(_settings().schemas_dir)
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


# -- replay and tail ---------------------------------------------------------------------------
@app.command()
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
        _settings(),
        input,
        rate,
        limit,
        completions=completions,
        id_prefix=id_prefix,
        progress=progress,
    )
    typer.echo(
        f"published {summary.rides_started} RideStarted and {summary.rides_completed} RideCompleted "
        f"in {summary.elapsed_s:.1f}s ({summary.achieved_rate:.0f} rides/s, target {summary.target_rate:g}; "
        f"clock x{summary.speedup:g}); {summary.invalid_events} invalid skipped; "
        f"{summary.cleaning['rows_in'] - summary.cleaning['rows_out']} raw rows filtered out "
        f"{summary.cleaning['dropped']}"
    )


@app.command()
def tail(
    topic: Annotated[
        str,
        typer.Argument(
            help="Topic name, or a role: started, completed, predictions, decisions, dlq."
        ),
    ],
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after N messages.")] = None,
    idle_timeout: Annotated[
        float, typer.Option(help="Stop after this many seconds without a message.")
    ] = 5.0,
) -> None:
    """Print a topic's events, decoded, as JSON lines (from the beginning)."""
    from ridestream.tail import read_topic

    settings = _settings()
    name = settings.topics.names().get(topic, topic)
    for record in read_topic(settings, name, limit=limit, idle_timeout_s=idle_timeout):
        _echo_json(record)


@app.command("settings")
def show_settings() -> None:
    """The effective settings, secrets masked."""
    settings = _settings()
    data = settings.model_dump(mode="json")
    for key in ("kafka_config", "producer_config", "consumer_config", "schema_registry_config"):
        data[key] = redact(data[key])
    data["bootstrap_servers"] = settings.bootstrap_servers
    _echo_json(data)


def main() -> None:
    """Console-script entry: known errors become one clear line and exit code 1."""
    try:
        app()
    except RidestreamError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
