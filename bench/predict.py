"""Model prediction throughput by batch size, and batch scoring of a whole month against it.

One run, one machine, the three champions of the registry (trained first, as ``make demo`` does,
when there are none):

1. **Predict.** rows/s of ``LoadedModel.predict`` on February's precomputed feature matrix, in
   batches of 1, 64, 512 and 4,096 rows, per target, with the native LightGBM booster and, when
   lleaves is installed, the compiled backend; one thread each, as the services load them.
2. **Batch scoring.** ``ridestream batch score`` (``batch.score.score_file``) of the whole
   February file, end to end: read the parquet in chunks, build the features, predict the three
   targets, write the parquet with version columns. Against it, the **raw booster** rate: the same
   three boosters, loaded the same way (every core, as batch scoring loads them), predicting the
   same month's features in the same chunks, with nothing else. Target: batch scoring ≥ 0.5 of
   the raw rate.

Each measurement is repeated ``--runs`` times and the median reported. Results go to
``bench/results/predict.json``.

    python -m bench.predict [--runs 3] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from batch.score import champion_models, score_file
from bench.common import machine, write_results
from bench.harness import ensure_champions
from ridestream.contracts.events import TARGETS
from ridestream.ml.features import build_features
from ridestream.ml.models import LoadedModel
from ridestream.ml.registry import MODEL_NAMES
from ridestream.ml.tlc import load_raw, month_file
from ridestream.settings import Settings

BATCH_SIZES = (1, 64, 512, 4096)
CHUNK_ROWS = 50_000  # batch scoring's default chunk


def lleaves_installed() -> bool:
    """Whether the compiled backend can be measured."""
    try:
        import lleaves  # noqa: F401
    except ImportError:
        return False
    return True


def rows_per_second(
    predict: Callable[[np.ndarray], Any], features: np.ndarray, batch: int, seconds: float
) -> float:
    """Rows/s of ``predict`` over consecutive batches of the matrix, for about ``seconds``."""
    batches = [features[i : i + batch] for i in range(0, len(features) - batch + 1, batch)]
    predict(batches[0])  # warm: first-call allocations, lleaves' lazy symbol lookup
    rows, started, index = 0, time.perf_counter(), 0
    while (elapsed := time.perf_counter() - started) < seconds or rows == 0:
        predict(batches[index % len(batches)])
        rows += batch
        index += 1
    return rows / elapsed


def median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    """The median of ``runs`` measurements, and every one of them."""
    samples = [measure() for _ in range(runs)]
    return statistics.median(samples), samples


def predict_table(
    settings: Settings, features: np.ndarray, runs: int, seconds: float
) -> dict[str, Any]:
    """Per backend, per target, per batch size: median rows/s."""
    backends = ["booster", *(["lleaves"] if lleaves_installed() else [])]
    table: dict[str, Any] = {}
    for backend in backends:
        models = champion_models(
            settings.model_copy(
                update={"models": settings.models.model_copy(update={"backend": backend})}
            ),
            threads=1,
        )
        table[backend] = {}
        for target, model in models.items():
            rates = {}
            for batch in tqdm(BATCH_SIZES, desc=f"{backend} {target}", unit="size", leave=False):
                rate, _ = median_of(
                    runs, partial(rows_per_second, model.predict, features, batch, seconds)
                )
                rates[str(batch)] = round(rate)
            table[backend][target] = {
                "model": f"{model.name} v{model.version}",
                "rows_per_s": rates,
            }
            sizes = "  ".join(f"batch {b:>5}: {r:>10,} rows/s" for b, r in rates.items())
            print(f"predict {backend:8} {target:9} {sizes}")
    return table


def raw_booster_rate(models: dict[str, LoadedModel], features: np.ndarray) -> float:
    """Rows/s of the three models alone over the month's features, in batch scoring's chunks."""
    started = time.perf_counter()
    for start in range(0, len(features), CHUNK_ROWS):
        chunk = features[start : start + CHUNK_ROWS]
        for model in models.values():
            model.predict(chunk)
    return len(features) / (time.perf_counter() - started)


def batch_scoring_rate(
    settings: Settings, models: dict[str, LoadedModel], source: Path, output: Path
) -> float:
    """Rows/s of scoring the whole file end to end, read to written."""
    started = time.perf_counter()
    summary = score_file(settings, source, output, models=models, progress=False)
    return summary.rows / (time.perf_counter() - started)


def scoring(settings: Settings, features: np.ndarray, source: Path, runs: int) -> dict[str, Any]:
    """Batch scoring of the month against the raw booster rate of the same models."""
    models = champion_models(
        settings.model_copy(
            update={"models": settings.models.model_copy(update={"backend": "booster"})}
        )
    )
    raw_samples, scoring_samples = [], []
    with tempfile.TemporaryDirectory(prefix="ridestream-bench-") as folder:
        output = Path(folder) / "scored.parquet"
        for _ in range(runs):  # alternate, so drift in the machine's load hits both alike
            raw_samples.append(raw_booster_rate(models, features))
            scoring_samples.append(batch_scoring_rate(settings, models, source, output))
    raw, scored = statistics.median(raw_samples), statistics.median(scoring_samples)
    return {
        "file": source.name,
        "rows": len(features),
        "chunk_rows": CHUNK_ROWS,
        "models": {t: f"{m.name} v{m.version}" for t, m in models.items()},
        "raw_booster_rows_per_s": round(raw),
        "batch_scoring_rows_per_s": round(scored),
        "ratio": round(scored / raw, 3),
        "target_ratio": 0.5,
        "met": scored / raw >= 0.5,
        "runs": {
            "raw_booster_rows_per_s": [round(r) for r in raw_samples],
            "batch_scoring_rows_per_s": [round(r) for r in scoring_samples],
        },
    }


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write bench/results/predict.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions per measurement")
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of one predict run")
    args = parser.parse_args(argv)

    settings = Settings()
    ensure_champions(settings, [MODEL_NAMES[target] for target in TARGETS])
    source = month_file("2023-02")
    # The raw file, uncleaned: batch scoring scores every row it is given.
    features = build_features(load_raw(source))

    table = predict_table(settings, features, args.runs, args.seconds)
    scored = scoring(settings, features, source, args.runs)
    print(
        f"batch scoring {scored['rows']:,} rides: {scored['batch_scoring_rows_per_s']:,} rows/s; "
        f"raw boosters {scored['raw_booster_rows_per_s']:,} rows/s; ratio {scored['ratio']} "
        f"(target ≥ 0.5: {'met' if scored['met'] else 'MISSED'})"
    )
    path = write_results(
        "predict",
        {
            "machine": machine(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "runs": args.runs,
            "seconds_per_run": args.seconds,
            "threads": 1,
            "predict": table,
            "batch_scoring": scored,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
