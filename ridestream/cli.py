"""The ``ridestream`` command: one entry point for operators, the demo and CI."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ridestream.exceptions import RidestreamError
from ridestream.ml.tlc import month_file
from ridestream.settings import Settings, get_settings, redact, redact_url

if TYPE_CHECKING:
    from ridestream.kestra import KestraClient
    from training.train import TrainResult

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
models_app = typer.Typer(
    help="The model registry: versions, aliases, promotion.", no_args_is_help=True
)
mlflow_app = typer.Typer(help="The MLflow tracking store.", no_args_is_help=True)
batch_app = typer.Typer(help="Offline scoring.", no_args_is_help=True)
kestra_app = typer.Typer(help="The Kestra flow that retrains the models.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter topic.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Online evaluation of the models.", no_args_is_help=True)
rides_app = typer.Typer(help="What the decision store knows of rides.", no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(rides_app, name="rides")
app.add_typer(dlq_app, name="dlq")
app.add_typer(kestra_app, name="kestra")
app.add_typer(kafka_app, name="kafka")
app.add_typer(models_app, name="models")
app.add_typer(mlflow_app, name="mlflow")
app.add_typer(batch_app, name="batch")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")

logger = logging.getLogger("ridestream.cli")

DEFAULT_TRAIN_MONTH = month_file("2023-01")
DEFAULT_VALID_MONTH = month_file("2023-02")


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
    from ridestream.contracts.compatibility import check_store
    from ridestream.contracts.schemas import load_store

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
        f"clock x{summary.speedup:g}); refused by the contract and skipped: "
        f"{summary.invalid_started} rides, {summary.invalid_completed} completions"
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
    from ridestream.kafka.tail import read_topic

    settings = _settings()
    name = settings.topics.names().get(topic, topic)
    for record in read_topic(settings, name, limit=limit, idle_timeout_s=idle_timeout):
        _echo_json(record)


# -- models ------------------------------------------------------------------------------------
@app.command()
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
            _settings(), names, [*months, valid_month], sample=sample, progress=progress
        )
        payload: Any = [s.as_dict() for s in scores]
    else:
        results = train_models(
            _settings(), names, months, valid_month, sample=sample, progress=progress, refit=refit
        )
        report_to_kestra(results)
        payload, text = [r.as_dict() for r in results], train_table(results)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(payload, indent=2, default=str))
    if as_json:
        _echo_json(payload)
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
    import os

    if "KESTRA_EXECUTION_ID" not in os.environ and not os.environ.get("RIDESTREAM_KESTRA_OUTPUTS"):
        return
    from kestra import Kestra  # type: ignore[import-untyped]

    Kestra.outputs({"models": [r.as_dict() for r in results]})
    for r in results:
        Kestra.counter(f"{r.model_name}.valid_rmse", r.metrics["rmse"], {"version": r.version})


@models_app.command("list")
def models_list() -> None:
    """Every registered version of the project's models, with aliases."""
    from ridestream.ml.registry import MODEL_NAMES, list_versions
    from ridestream.ml.tracking import mlflow_client

    client = mlflow_client(_settings().mlflow)
    for name in MODEL_NAMES.values():
        for v in list_versions(client, name):
            aliases = ",".join(v.aliases) or "-"
            typer.echo(f"{name:<22} v{v.version:<4} {aliases:<20} {v.tags.get('gate', '')}")


@models_app.command("check")
def models_check() -> None:
    """Exit 1 unless every model has a champion trained on today's feature set."""
    from ridestream.ml.features import FEATURE_SET
    from ridestream.ml.registry import outdated_champions
    from ridestream.ml.tracking import mlflow_client

    outdated = outdated_champions(mlflow_client(_settings().mlflow), FEATURE_SET)
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
    from ridestream.ml.registry import promote
    from ridestream.ml.tracking import mlflow_client

    previous = promote(mlflow_client(_settings().mlflow), name, version)
    typer.echo(f"{name}@champion = v{version} (was {previous and 'v' + previous})")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Registered model, e.g. ride-duration.")],
) -> None:
    """Give @champion back to the version the current champion replaced."""
    from ridestream.ml.registry import rollback
    from ridestream.ml.tracking import mlflow_client

    was, now = rollback(mlflow_client(_settings().mlflow), name)
    typer.echo(f"{name}@champion = v{now} (rolled back from v{was})")


@mlflow_app.command("ui")
def mlflow_ui(port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000) -> None:
    """Run `mlflow server` on 127.0.0.1 over the project's store, to look at runs and models."""
    import os
    import subprocess

    from ridestream.ml.tracking import mlflow_client

    settings = _settings().mlflow
    mlflow_client(settings)  # creates the local store if needed
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", settings.resolved_tracking_uri,
    ]  # fmt: skip
    if settings.tracking_uri is None:
        command += ["--default-artifact-root", settings.artifact_root.as_uri()]
    typer.echo(f"MLflow UI at http://127.0.0.1:{port} (Ctrl+C stops it)")
    raise typer.Exit(subprocess.call(command, env=os.environ.copy()))


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

    summary = score_file(_settings(), input, output, chunk_rows=chunk_rows, progress=progress)
    versions = ", ".join(f"{t} v{v}" for t, v in summary.versions.items())
    typer.echo(
        f"scored {summary.rows} rides in {summary.chunks} chunk(s) into {summary.output} ({versions})"
    )


# -- stream processors -------------------------------------------------------------------------
def _stop_on_signals() -> threading.Event:
    """SIGTERM/SIGINT only set the returned event; a second SIGINT interrupts at once."""
    import signal

    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        logger.info(
            "signal %s: finishing the batch in flight, then stopping", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def _service_settings(group: str, **options: object) -> Settings:
    """The settings with a service group's command-line options (those given) applied."""
    settings = _settings()
    updates = {name: value for name, value in options.items() if value is not None}
    if not updates:
        return settings
    section = getattr(settings, group)
    return settings.model_copy(update={group: section.model_copy(update=updates)})


@app.command()
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

    settings = _service_settings("predictor", instance_id=instance_id, metrics_port=metrics_port)
    Predictor(settings, target).run(_stop_on_signals())


@app.command()
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

    settings = _service_settings("decisions", instance_id=instance_id, metrics_port=metrics_port)
    service = DecisionService(settings)
    try:
        service.run(_stop_on_signals())
    finally:
        service.close()


@app.command()
def gateway(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Run the HTTP gateway (FastAPI on uvicorn) until SIGTERM/SIGINT."""
    import uvicorn

    from gateway.app import create_app

    settings = _settings()
    config = settings.gateway
    uvicorn.run(
        create_app(settings),
        host=host or config.host,
        port=config.port if port is None else port,
        log_level=settings.log_level.lower(),
        # The gateway's own /metrics counts requests; uvicorn's access log would double the I/O.
        access_log=False,
        # Nothing here reads the client's address (A/B is sticky by client_id), so there is no
        # X-Forwarded-For to trust and rewrite on every request.
        proxy_headers=False,
        server_header=False,
    )


@evaluate_app.command("report")
def evaluate_report(
    plot: Annotated[
        Path | None, typer.Option(help="Write the error-over-time plot (PNG) here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Online MAE/RMSE per target and model version (window and total), and promotion advice."""
    from decision_service.evaluation import report
    from ridestream.store.decisions import DecisionStore

    settings = _settings()
    store = DecisionStore(settings.decisions.resolved_store_url)
    try:
        result = report(store, settings, plot)
    finally:
        store.close()
    if as_json:
        _echo_json(result)
        return
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
    for comparison in result["comparisons"]:
        verdict = "promote" if comparison["recommend"] else "keep the champion"
        typer.echo(
            f"{comparison['model_name']} challenger v{comparison['challenger_version']} vs "
            f"champion v{comparison['champion_version']} on {comparison['rides']} rides"
            f"{'' if comparison['paired'] else ' each (A/B, unpaired)'}: RMSE "
            f"{comparison['challenger_rmse']:.3f} vs {comparison['champion_rmse']:.3f} → {verdict}"
        )
    counts = result["counts"]
    typer.echo(
        f"decisions {counts['decisions']} (partial {counts['partial_decisions']}), pending "
        f"{counts['pending']}, rides with ground truth {counts['actuals']}, "
        f"evaluated predictions {counts['evaluated']}"
    )
    if plot is not None:
        typer.echo(f"plot: {result['plot']}")


@rides_app.command("show")
def rides_show(ride_id: Annotated[str, typer.Argument(help="The ride's id.")]) -> None:
    """A ride's predictions, decision and ground truth from the decision store."""
    from ridestream.store.decisions import DecisionStore

    store = DecisionStore(_settings().decisions.resolved_store_url)
    try:
        result = store.ride(ride_id)
    finally:
        store.close()
    if result is None:
        raise RidestreamError(f"the decision store knows no ride {ride_id!r}")
    _echo_json(result.as_dict())


@dlq_app.command("replay")
def dlq_replay(
    kind: Annotated[
        list[str] | None, typer.Option(help="Only these error kinds (repeatable).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N letters.")] = None,
) -> None:
    """Re-publish dead letters to their source topics, once each."""
    from ridestream.kafka.dlq import replay as replay_letters

    counts = replay_letters(_settings(), kinds=set(kind) if kind else None, limit=limit)
    typer.echo(f"replayed {counts['replayed']} dead letter(s); skipped {counts['skipped']}")


# -- kestra ------------------------------------------------------------------------------------
def _kestra_client() -> KestraClient:
    from ridestream.kestra import KestraClient

    return KestraClient(_settings().kestra)


def default_flow_file() -> Path:
    """training/kestra/train-models.yml of the installed project."""
    import training

    return Path(training.__file__).resolve().parent / "kestra" / "train-models.yml"


@kestra_app.command("deploy")
def kestra_deploy(
    flow_file: Annotated[
        Path | None, typer.Option("--file", exists=True, dir_okay=False, help="Flow YAML.")
    ] = None,
) -> None:
    """Create or update the training flow on the Kestra server."""
    with _kestra_client() as client:
        flow = client.deploy_flow((flow_file or default_flow_file()).read_text())
    typer.echo(f"deployed {flow.get('namespace')}.{flow.get('id')} revision {flow.get('revision')}")


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
    settings = _settings().kestra
    with _kestra_client() as client:
        execution = client.run(
            settings.namespace, settings.flow_id,
            {"month": month, "valid_month": valid_month, "targets": targets, "reason": reason},
        )  # fmt: skip
        typer.echo(f"execution {execution.id} {execution.state}")
        if not wait:
            return
        execution = client.wait(execution.id, timeout)
        for entry in client.logs(execution.id):
            typer.echo(
                f"  [{entry.get('level')}] {entry.get('taskId') or '-'}: {entry.get('message')}"
            )
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
            for entry in client.logs(execution_id):
                typer.echo(
                    f"  [{entry.get('level')}] {entry.get('taskId') or '-'}: {entry.get('message')}"
                )


@app.command("settings")
def show_settings() -> None:
    """The effective settings, secrets masked."""
    settings = _settings()
    data = settings.model_dump(mode="json")
    for key in ("kafka_config", "producer_config", "consumer_config", "schema_registry_config"):
        data[key] = redact(data[key])
    data["mlflow"]["tracking_uri"] = redact_url(data["mlflow"]["tracking_uri"])
    data["schema_registry_url"] = redact_url(data["schema_registry_url"])
    data["kestra"]["url"] = redact_url(data["kestra"]["url"])
    data["decisions"]["store_url"] = redact_url(data["decisions"]["store_url"])
    data["bootstrap_servers"] = settings.bootstrap_servers
    _echo_json(data)


def main() -> None:
    """Console-script entry: known errors become one clear line and exit code 1."""
    from pydantic import ValidationError as SettingsError

    try:
        app()
    except RidestreamError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except SettingsError as exc:  # a malformed RIDESTREAM_* variable
        typer.echo(f"error: invalid settings: {exc}", err=True)
        sys.exit(1)
