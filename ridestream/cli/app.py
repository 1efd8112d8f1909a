"""The root command: logging, ``settings``, the core's commands, and every service's, found
through the ``ridestream.commands`` entry points (``pyproject.toml``)."""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points
from typing import Annotated

import typer
from confluent_kafka import KafkaException
from pydantic import ValidationError

from ridestream.cli import kafka, registry
from ridestream.cli.common import echo_json, settings
from ridestream.exceptions import RidestreamError
from ridestream.settings import redact, redact_url

COMMANDS_GROUP = "ridestream.commands"

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="ridestream: streaming inference for ride-hailing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    level = (
        logging.DEBUG if verbose else getattr(logging, settings().log_level.upper(), logging.INFO)
    )
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


@app.command("settings")
def show_settings() -> None:
    """The effective settings, secrets masked."""
    current = settings()
    data = current.model_dump(mode="json")
    for key in ("kafka_config", "producer_config", "consumer_config", "schema_registry_config"):
        data[key] = redact(data[key])
    data["mlflow"]["tracking_uri"] = redact_url(data["mlflow"]["tracking_uri"])
    data["schema_registry_url"] = redact_url(data["schema_registry_url"])
    data["kestra"]["url"] = redact_url(data["kestra"]["url"])
    data["decisions"]["store_url"] = redact_url(data["decisions"]["store_url"])
    data["bootstrap_servers"] = current.bootstrap_servers
    echo_json(data)


def register_services(root: typer.Typer) -> list[str]:
    """Let every installed service add its commands; returns their entry-point names."""
    names = []
    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        entry.load()(root)
        names.append(entry.name)
    if not names:
        logger.warning("no service commands: is ridestream installed (pip install -e .)?")
    return names


kafka.register(app)
registry.register(app)
SERVICES = register_services(app)


def main() -> None:
    """Console-script entry: known errors become one clear line and exit code 1."""
    try:
        app()
    except RidestreamError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KafkaException as exc:  # librdkafka refusing a client's options, say
        # No service should let one escape: where it came from goes to the log.
        logger.debug("unhandled Kafka error", exc_info=exc)
        typer.echo(f"error: kafka: {exc.args[0].str() if exc.args else exc}", err=True)
        sys.exit(1)
    except ValidationError as exc:  # a malformed RIDESTREAM_* variable
        typer.echo(f"error: invalid settings: {exc}", err=True)
        sys.exit(1)
