"""docs/benchmarks.md from bench/results/*.json: each benchmark's current figures, with the
command and the date that measured them, and a plot each. History is in git, not here.

    python -m bench.report [--results bench/results] [--output docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from bench.common import RESULTS

ROOT = Path(__file__).resolve().parents[1]
Section = Callable[[dict[str, Any], Path], tuple[list[str], str]]


def _met(flag: Any) -> str:
    return "met" if flag else "**missed**"


def _figure() -> Any:
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _bars(path: Path, rows: list[tuple[str, dict[str, Any]]], key: str, label: str) -> None:
    fig, ax = _figure()
    ax.bar([name for name, _ in rows], [r[key] for _, r in rows], color="#4c72b0")
    ax.set(ylabel=label)
    ax.tick_params(axis="x", labelsize=8)
    _save(fig, path)


def predict(data: dict[str, Any], plot: Path) -> tuple[list[str], str]:
    """Prediction throughput by batch size, and batch scoring against the raw boosters."""
    table = data["predict"]
    sizes = list(next(iter(next(iter(table.values())).values()))["rows_per_s"])
    lines = [
        "| backend | target | model | " + " | ".join(f"batch {s}" for s in sizes) + " |",
        "| --- | --- | --- | " + " | ".join("---:" for _ in sizes) + " |",
    ]
    fig, ax = _figure()
    for backend, targets in table.items():
        for target, row in targets.items():
            rates = [row["rows_per_s"][s] for s in sizes]
            lines.append(
                f"| {backend} | {target} | {row['model']} | "
                + " | ".join(f"{r:,}" for r in rates)
                + " |"
            )
            ax.plot([int(s) for s in sizes], rates, marker="o", label=f"{backend} {target}")
    ax.set(xscale="log", yscale="log", xlabel="rows per call", ylabel="rows/s (one thread)")
    ax.legend(fontsize=7, ncol=2)
    _save(fig, plot)
    scored = data["batch_scoring"]
    lines += [
        "",
        f"Batch scoring of {scored['file']} ({scored['rows']:,} rides, read → features → three "
        f"models → write): {scored['batch_scoring_rows_per_s']:,} rows/s against the same models "
        f"alone on its features {scored['raw_booster_rows_per_s']:,} rows/s: **{scored['ratio']}** "
        f"(target ≥ {scored['target_ratio']}: {_met(scored['met'])}).",
    ]
    return lines, "python -m bench.predict"


def publish(data: dict[str, Any], plot: Path) -> tuple[list[str], str]:
    """The publisher next to Kafka's own ProducerPerformance."""
    ours, theirs = data["ridestream_publisher"], data["kafka_producer_performance"]
    single = data["ridestream_publisher_single_event_api"]
    rows = [
        ("batch API", ours),
        ("one event a call", single),
        ("Kafka ProducerPerformance", theirs),
    ]
    lines = [
        "| producer | records | rides/s | p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {name} | {r['records']:,} | {r['rides_per_s']:,.0f} | {r['latency_ms_p50']} | "
            f"{r['latency_ms_p99']} |"
            for name, r in rows
        ),
        "",
        f"Throughput ratio **{data['throughput_ratio']}** (target ≥ {data['target_ratio']}: "
        f"{_met(data['meets_target'])}); {data['record_size_bytes']}-byte records, "
        f"`acks={data['producer_props']['acks']}`, idempotent, on the same broker.",
    ]
    _bars(plot, rows, "rides_per_s", "records/s")
    return lines, data.get("command", "python -m bench.publish")


def stream(data: dict[str, Any], plot: Path) -> tuple[list[str], str]:
    """The predictor: its stages in memory, end to end through Kafka, the peer, latency, memory."""
    limit = data["part1_limit_in_memory"]
    stages = ("decode", "validate", "features", "predict", "encode")
    e2e, steady = data["part1_end_to_end"], data["part3_4_steady"]
    latency, rss, meets = steady["latency"], steady["rss"], data["meets"]
    peer = data.get("part2_quix_streams")
    lines = [
        "| stage (µs per ride) | " + " | ".join(limit) + " |",
        "| --- | " + " | ".join("---:" for _ in limit) + " |",
        *(
            f"| {stage} | " + " | ".join(f"{limit[b][stage + '_us']:.2f}" for b in limit) + " |"
            for stage in stages
        ),
        "| rides/s in memory | "
        + " | ".join(f"{limit[b]['rides_per_s']:,.0f}" for b in limit)
        + " |",
        "",
        f"- End to end ({e2e['backend']}, {e2e['rides']:,} rides, transactions): "
        f"{e2e['rides_per_s']:,.0f} rides/s, **{data['part1_ratio']}** of in memory (target ≥ "
        f"{data['targets']['e2e_over_in_memory']}: {_met(meets['e2e_over_in_memory'])}).",
        f"- At {steady['rate_rides_per_s']:,} rides/s: event → committed prediction p50 "
        f"{latency['p50_ms']} ms, p99 **{latency['p99_ms']} ms** (target ≤ "
        f"{data['targets']['latency_p99_ms']:.0f}: {_met(meets['latency_p99_ms'])}).",
        f"- Memory over {steady['seconds'] / 60:.0f} min: {rss['first_window_median_mib']} → "
        f"{rss['last_window_median_mib']} MiB ({_met(meets['rss_drift'])}).",
    ]
    if peer:
        lines.append(
            f"- The Quix Streams peer on the same topic, model and features: "
            f"{peer['rides_per_s']:,.0f} rides/s; ours **{data['part2_ours_over_quix']}×** "
            f"(target ≥ {data['targets']['ours_over_quix']}: {_met(meets['ours_over_quix'])})."
        )
    fig, ax = _figure()
    bottom = [0.0] * len(limit)
    for stage in stages:
        values = [limit[b][stage + "_us"] for b in limit]
        ax.bar(list(limit), values, bottom=bottom, label=stage)
        bottom = [a + b for a, b in zip(bottom, values, strict=True)]
    ax.set(ylabel="µs per ride, in memory")
    ax.legend(fontsize=8)
    _save(fig, plot)
    return lines, data.get("command", "python -m bench.stream")


def decisions(data: dict[str, Any], plot: Path) -> tuple[list[str], str]:
    """The decision service alone on a backlog, then the whole pipeline at fixed rates."""
    alone = data["alone_on_a_backlog"]
    lines = [
        f"Alone on a backlog of {alone['rides']:,} rides ({alone['backlog']}): "
        f"{alone['decisions_per_s']:,.0f} decisions/s, {alone['cpu_us_per_ride']} CPU-µs a ride.",
        "",
        "| rides/s | decisions/s | kept up | event → stored decision p50 s | p99 s | target p99 s |",
        "| ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    fig, ax = _figure()
    for run in data["runs"]:
        lat = run["latency_event_to_stored_decision_s"]
        lines.append(
            f"| {run['rate']:,.0f} | {run['decisions_per_s']:,.0f} | {run['kept_up']} | "
            f"{lat['p50']} | **{lat['p99']}** | {run['target_p99_s']} ({_met(run['p99_met'])}) |"
        )
    rates = [run["rate"] for run in data["runs"]]
    for quantile in ("p50", "p99"):
        values = [run["latency_event_to_stored_decision_s"][quantile] for run in data["runs"]]
        ax.plot(rates, values, marker="o", label=quantile)
    ax.set(xlabel="rides/s", ylabel="event → stored decision (s)")
    ax.legend()
    _save(fig, plot)
    return lines, data.get("command", "python -m bench.decisions")


def gateway(data: dict[str, Any], plot: Path) -> tuple[list[str], str]:
    """The gateway under wrk next to `mlflow models serve` of the same model."""
    ours, comparison = data["gateway"], data.get("comparison")
    rows = [("gateway", ours["sync"])]
    if data.get("mlflow") and data["mlflow"].get("sync"):
        rows.append(("mlflow models serve", data["mlflow"]["sync"]))
    if ours.get("healthz"):
        rows.append(("gateway /healthz (the web stack alone)", ours["healthz"]))
    if ours.get("enhanced"):
        rows.append(("gateway, opted in", ours["enhanced"]))
    lines = [
        "| server | requests/s | p50 ms | p99 ms | CPU-ms per request |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {name} | {r['requests_per_s']:,.0f} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['server_cpu_ms_per_request']} |"
            for name, r in rows
        ),
    ]
    if comparison:
        lines += [
            "",
            f"Throughput **{comparison['throughput_ratio']}×** mlflow's (target ≥ "
            f"{comparison['target_throughput_ratio']}: {_met(comparison['meets_throughput_target'])}), "
            f"p99 ratio **{comparison['p99_ratio']}** (target ≤ {comparison['target_p99_ratio']}: "
            f"{_met(comparison['meets_p99_target'])}).",
        ]
    _bars(plot, rows, "requests_per_s", "requests/s")
    return lines, data.get("command", "python -m bench.gateway")


def cluster(data: dict[str, Any], plot: Path) -> tuple[list[str], str]:
    """One node against three, and each against Kafka's own producer and copier."""
    names = {"one_node": "1 node", "three_nodes": "3 nodes (RF 3, min ISR 2)"}
    layouts = data["layouts"]
    lines = [
        "| cluster | publisher rides/s (p99 ms) | ProducerPerformance rec/s (p99 ms) | "
        "predictor rides/s | predictor p50 / p99 ms at a steady rate | "
        "TransactionalMessageCopier rec/s | predictor ÷ copier |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, row in layouts.items():
        ours, theirs = row["publisher"], row["kafka_producer_performance"]
        steady = row["predictor_steady"]
        lines.append(
            f"| {names[key]} | {ours['rides_per_s']:,.0f} ({ours['latency_ms_p99']}) | "
            f"{theirs['rides_per_s']:,.0f} ({theirs['latency_ms_p99']}) | "
            f"{row['predictor']['rides_per_s']:,.0f} | {steady['p50_ms']} / {steady['p99_ms']} "
            f"({steady['rate_rides_per_s']:,}/s) | "
            f"{row['transactional_copier']['records_per_s']:,.0f} | "
            f"**{row['predictor_over_copier']}** ({_met(row['meets_target'])}) |"
        )
    ratios = data["three_over_one"]
    lines += [
        "",
        f"Three nodes ÷ one: publisher **{ratios['publisher']}**, predictor "
        f"**{ratios['predictor']}**. The predictor's target is ≥ "
        f"{data['target_predictor_over_copier']} of the copier's records/s on the same topic "
        f"(it also decodes, predicts and encodes); {data['record_size_bytes']}-byte records, "
        "`acks=all`, idempotent producers.",
    ]
    rows = [(names[key], row["predictor"]) for key, row in layouts.items()]
    rows += [
        (
            f"copier, {names[key].split(' (')[0]}",
            {"rides_per_s": row["transactional_copier"]["records_per_s"]},
        )
        for key, row in layouts.items()
    ]
    _bars(plot, rows, "rides_per_s", "records/s")
    return lines, data.get("command", "python -m bench.cluster")


def optin(data: dict[str, Any], plot: Path) -> tuple[list[str], str]:
    """Opted-in riders' round trips while the backend streams, and waiting streams' store reads."""
    trips, targets = data["round_trips"], data["targets"]
    answer, trip = trips["answer_s"], trips["round_trip_s"]
    lines = [
        f"{trips['riders']} riders for {data['seconds']:.0f} s while the backend streams "
        f"{data['rate']:,.0f} rides/s: {trips['round_trips']:,} round trips "
        f"(outcomes {trips['outcomes']}).",
        "",
        "| | p50 s | p99 s | target p99 s |",
        "| --- | ---: | ---: | ---: |",
        f"| opted-in request's answer | {answer['p50']} | **{answer['p99']}** | "
        f"{targets['answer_p99_s']} ({_met(targets['answer_met'])}) |",
        f"| request → SSE `result` | {trip['p50']} | **{trip['p99']}** | "
        f"{targets['round_trip_p99_s']} "
        f"({_met(targets['round_trip_met'])}) |",
    ]
    for hop, q in trips["hops_s"].items():
        lines.append(f"| … {hop.replace('_', ' ')} | {q['p50']} | {q['p99']} | |")
    waiting = data.get("waiting_streams")
    if waiting:
        lines += [
            "",
            f"{waiting['streams']:,} open SSE streams waiting {waiting['paused_s']:.0f} s (the "
            f"decision service paused): **{waiting['store_reads_while_waiting']:.0f}** store "
            f"reads meanwhile, {waiting['store_reads_per_stream']} per stream in all (its first "
            f"read and the one its decision woke); {waiting['results']:,} results after.",
        ]
    rows = [(name.replace("_", " "), q) for name, q in trips["hops_s"].items()]
    _bars(plot, rows, "p50", "p50 s")
    return lines, data.get("command", "python -m bench.optin")


SECTIONS: dict[str, tuple[str, Section]] = {
    "predict": ("Prediction and batch scoring", predict),
    "publish": ("Publishing rides", publish),
    "stream": ("The predictor", stream),
    "decisions": ("The decision service and the pipeline", decisions),
    "gateway": ("The gateway", gateway),
    "optin": ("Opted-in riders", optin),
    "cluster": ("A three-node cluster", cluster),
}


def write_report(results: Path, output: Path) -> list[str]:
    """Write the page and its plots (beside it, in ``benchmarks/``); returns the sections."""
    plots = output.parent / "benchmarks"
    plots.mkdir(parents=True, exist_ok=True)
    page = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m bench.report` from bench/results/*.json; do not edit. -->",
        "",
        "Each benchmark is a program (`bench/`, all of them: `make bench`) that writes its "
        "results to `bench/results/<name>.json`; this page shows the latest run of each, with "
        "the command and the date that measured it. Ratios are against a baseline or peer "
        "measured in the same run, on the same machine.",
        "",
    ]
    written = []
    for name, (title, section) in SECTIONS.items():
        path = results / f"{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        plot = plots / f"{name}.png"
        lines, command = section(data, plot)
        machine = data.get("machine", {})
        page += [
            f"## {title}",
            "",
            f"`{command.strip()}` — measured {data.get('measured_at', 'at an unknown time')} on "
            f"{machine.get('cpus', '?')} CPUs, Python {machine.get('python', '?')}.",
            "",
            *lines,
            "",
            f"![{title}](benchmarks/{plot.name})",
            "",
        ]
        written.append(name)
    output.write_text("\n".join(page))
    return written


def main(argv: list[str] | None = None) -> None:
    """Write docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    written = write_report(args.results, args.output)
    print(f"{args.output}: {', '.join(written)}")


if __name__ == "__main__":
    main()
