"""``ridestream kafka``, ``topics``, ``tail`` and ``dlq``: the broker and what flows through it."""

from __future__ import annotations

from typing import Annotated

import typer

from ridestream.cli.common import echo_json, settings
from ridestream.kafka import acls
from ridestream.kafka.clients import make_admin
from ridestream.kafka.dlq import replay as replay_letters
from ridestream.kafka.local import LocalKafka
from ridestream.kafka.security import PRINCIPALS
from ridestream.kafka.tail import read_topic
from ridestream.kafka.topics import create_project_topics, summarize_topics

kafka_app = typer.Typer(
    help="The local Kafka broker or cluster (KRaft, Kafka's own jars, 127.0.0.1).",
    no_args_is_help=True,
)

Brokers = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=9,
        help="Nodes of the local cluster (default: RIDESTREAM_LOCAL_KAFKA__BROKERS, or what the "
        "running cluster was started with).",
    ),
]
topics_app = typer.Typer(help="The project's topics.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter topic.", no_args_is_help=True)


@kafka_app.command("fetch")
def kafka_fetch() -> None:
    """Download Kafka's jars from Maven Central into the cache (once)."""
    typer.echo(LocalKafka(settings().local_kafka).fetch_jars())


Secure = Annotated[
    bool | None,
    typer.Option(
        "--secure/--plaintext",
        help="SASL_SSL (SCRAM-SHA-512, TLS from a CA of its own) and ACLs per service, or "
        "plaintext (default: what the cluster in the home folder was started with, else "
        "plaintext).",
    ),
]


@kafka_app.command("start")
def kafka_start(brokers: Brokers = None, secure: Secure = None) -> None:
    """Start the local broker or cluster, or reuse what runs; returns when every node answers."""
    current = settings()
    local = LocalKafka(current.local_kafka, brokers, secure)
    status = local.start()
    typer.echo(
        f"Kafka {status.version} answers at {status.bootstrap} "
        f"({len(status.nodes)} node(s), {'SASL_SSL' if local.secure else 'plaintext'}, "
        f"home {status.home})"
    )
    if local.count > 1:
        typer.echo(f"clients: export RIDESTREAM_LOCAL_KAFKA__BROKERS={local.count}")
    if local.secure:
        typer.echo(f"ACLs for topics {current.topics.prefix}rides.*: {local.apply_acls(current)}")
        typer.echo("each service runs as its own principal; give it its credentials with")
        for principal in PRINCIPALS:
            typer.echo(
                f"  {principal:<10} RIDESTREAM_KAFKA_CONFIG_FILE={local.client_config_file(principal)}"
            )


@kafka_app.command("stop")
def kafka_stop(brokers: Brokers = None) -> None:
    """Stop the local broker or cluster cleanly."""
    stopped = LocalKafka(settings().local_kafka, brokers).stop()
    typer.echo("Kafka stopped" if stopped else "no local Kafka was running")


@kafka_app.command("status")
def kafka_status(brokers: Brokers = None) -> None:
    """Each local node: running, answering; exit 1 when nothing answers."""
    status = LocalKafka(settings().local_kafka, brokers).status()
    security = "SASL_SSL" if status.secure else "plaintext"
    typer.echo(
        f"bootstrap={status.bootstrap} security={security} answers={status.answers} "
        f"home={status.home}"
    )
    for node in status.nodes:
        typer.echo(
            f"  node {node.node_id}: {node.bootstrap} running={node.pid is not None} "
            f"pid={node.pid} answers={node.answers}"
        )
    if not status.answers:
        raise typer.Exit(1)


@kafka_app.command("acls")
def kafka_acls(
    apply: Annotated[
        bool, typer.Option(help="Create them on the configured cluster (needs ALTER on it).")
    ] = False,
) -> None:
    """Each service principal's ACLs for the configured topics: least privilege."""
    current = settings()
    grants = acls.service_grants(current)
    for grant in grants:
        typer.echo(grant.line())
    if apply:
        typer.echo(f"applied {acls.apply(make_admin(current), grants)} ACL(s)")


@topics_app.command("create")
def topics_create(
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Default: RIDESTREAM_TOPICS__PARTITIONS.")
    ] = None,
) -> None:
    """Create the topics of the design (existing ones are left as they are)."""
    current = settings()
    for name, created in create_project_topics(current, make_admin(current), partitions).items():
        typer.echo(f"{name}: {'created' if created else 'exists'}")


@topics_app.command("list")
def topics_list() -> None:
    """The project's topics with partition and message counts."""
    current = settings()
    for summary in summarize_topics(current, list(current.topics.names().values())):
        typer.echo(
            f"{summary.name:<32} partitions={summary.partitions:<3} messages={summary.messages}"
        )


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
    current = settings()
    name = current.topics.names().get(topic, topic)
    for record in read_topic(current, name, limit=limit, idle_timeout_s=idle_timeout):
        echo_json(record)


@dlq_app.command("replay")
def dlq_replay(
    kind: Annotated[
        list[str] | None, typer.Option(help="Only these error kinds (repeatable).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N letters.")] = None,
) -> None:
    """Re-publish dead letters to their source topics, once each."""
    counts = replay_letters(settings(), kinds=set(kind) if kind else None, limit=limit)
    typer.echo(f"replayed {counts['replayed']} dead letter(s); skipped {counts['skipped']}")


def register(app: typer.Typer) -> None:
    """Add these commands to the root command."""
    app.add_typer(kafka_app, name="kafka")
    app.add_typer(topics_app, name="topics")
    app.command()(tail)
    app.add_typer(dlq_app, name="dlq")
