"""Online evaluation: every model version that predicted a ride (champion and challenger) against
the ride's ground truth. MAE, RMSE and count per target and model version, over a sliding window
of rides and in total, come from the store's ``errors`` table (written in the same transaction as
the predictions and completions), so the figures survive restarts and equal an offline
computation on the same rides.

Promotion: a challenger is compared with the champion on the rides both predicted (shadowing, as
the predictors do). When the two answered different rides (the gateway's A/B split of the simple
model), each is measured on its own rides instead and the comparison says it is unpaired. When the
challenger's RMSE is at least ``promote_margin`` lower over at least ``promote_min_rides`` rides
(of each, when unpaired), promotion is recommended, and with ``auto_promote`` done through the
registry. Online error: when a champion's
windowed MAE exceeds its validation MAE (logged at training) by ``error_ratio_threshold``,
retraining is triggered.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from decision_service.background import in_background
from decision_service.metrics import DecisionMetrics
from decision_service.retrain import Retrainer
from ridestream.contracts.events import TARGETS
from ridestream.ml.registry import CHALLENGER, CHAMPION, MODEL_NAMES, alias_version, promote
from ridestream.ml.tracking import mlflow_client
from ridestream.settings import Settings
from ridestream.store.decisions import DecisionStore
from ridestream.store.reports import evaluation_of

logger = logging.getLogger(__name__)

REFRESH_INTERVAL_S = 10.0


@dataclass(frozen=True)
class Comparison:
    """A challenger against the champion, on the rides both predicted."""

    target: str
    model_name: str
    champion_version: str
    challenger_version: str
    rides: int
    champion_rmse: float
    challenger_rmse: float
    recommend: bool
    paired: bool = True  # False: an A/B split, each version measured on its own rides

    @property
    def improvement(self) -> float:
        """How much lower the challenger's RMSE is, as a share of the champion's."""
        return 1.0 - self.challenger_rmse / self.champion_rmse if self.champion_rmse else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "improvement": self.improvement}


def compare_challengers(errors: pd.DataFrame, margin: float, min_rides: int) -> list[Comparison]:
    """Every challenger version against the champion predictions of the same rides."""
    comparisons: list[Comparison] = []
    if errors.empty:
        return comparisons
    errors = errors.assign(squared=(errors["predicted"] - errors["actual"]) ** 2)
    for (target, model_name), group in errors.groupby(["target", "model_name"], sort=True):
        champion = group[group["role"] == "champion"].drop_duplicates("ride_id")
        for version, challenger in group[group["role"] == "challenger"].groupby("model_version"):
            paired = challenger.merge(champion, on="ride_id", suffixes=("_challenger", "_champion"))
            if not paired.empty:
                champion_version = paired["model_version_champion"].value_counts().index[0]
                rides = len(paired)
                champion_rmse = float(np.sqrt(paired["squared_champion"].mean()))
                challenger_rmse = float(np.sqrt(paired["squared_challenger"].mean()))
            elif not champion.empty:
                champion_version = champion["model_version"].value_counts().index[0]
                rides = min(len(challenger), len(champion))
                champion_rmse = float(np.sqrt(champion["squared"].mean()))
                challenger_rmse = float(np.sqrt(challenger["squared"].mean()))
            else:
                continue
            comparisons.append(
                Comparison(
                    target=str(target),
                    model_name=str(model_name),
                    champion_version=str(champion_version),
                    challenger_version=str(version),
                    rides=rides,
                    champion_rmse=champion_rmse,
                    challenger_rmse=challenger_rmse,
                    recommend=rides >= min_rides
                    and challenger_rmse <= champion_rmse * (1 - margin),
                    paired=not paired.empty,
                )
            )
    return comparisons


def _log_failure(refresh: Future[None]) -> None:
    if (error := refresh.exception()) is not None:
        logger.warning("online evaluation refresh failed (next one at its interval): %r", error)


class OnlineEvaluator:
    """Exports the evaluation as metrics, acts on promotions and on online error."""

    def __init__(
        self,
        settings: Settings,
        store: DecisionStore,
        metrics: DecisionMetrics,
        *,
        retrainer: Retrainer | None = None,
        refresh_interval_s: float = REFRESH_INTERVAL_S,
    ) -> None:
        self.settings = settings
        self.config = settings.decisions.evaluation
        self.store = store
        self.metrics = metrics
        self.retrainer = retrainer or Retrainer(settings, store, metrics)
        self.refresh_interval_s = refresh_interval_s
        self._last = time.monotonic()
        self._recommended: set[tuple[str, str]] = set()
        # The registry is read off the decision loop: its first use imports mlflow (seconds), and
        # a slow or unreachable registry must not hold decisions back.
        self._validation: dict[tuple[str, str], Future[float | None]] = {}
        self._champions: Future[dict[tuple[str, str], float | None]] | None = None
        self._refreshing: Future[None] | None = None

    def prefetch(self) -> Future[dict[tuple[str, str], float | None]]:
        """Start reading the champions' validation MAEs (once), so that the first online-error
        check finds them rather than importing mlflow in the middle of the stream."""
        if self._champions is None:
            self._champions = in_background(
                champion_validation_maes, self.settings.mlflow.resolved_tracking_uri
            )
            self._champions.add_done_callback(self._remember_champions)
        return self._champions

    def _remember_champions(self, read: Future[dict[tuple[str, str], float | None]]) -> None:
        if read.exception() is not None:
            return  # each version is then read when first needed
        for key, value in read.result().items():
            known: Future[float | None] = Future()
            known.set_result(value)
            self._validation.setdefault(key, known)

    def maybe_refresh(self, force: bool = False) -> None:
        """Every refresh interval, in the background: metrics, promotion, online-error check
        (``force``: now, in this thread).

        A refresh reads each version's recent rides and compares them, which takes longer the
        more versions the store holds: done between the loop's batches it held every decision
        back that long. The store is read in its own connection (WAL: readers do not block the
        loop's writes); one refresh runs at a time."""
        if force:
            self.refresh()
            return
        now = time.monotonic()
        due = now - self._last >= self.refresh_interval_s
        if not due or (self._refreshing is not None and not self._refreshing.done()):
            return
        self._last = now
        self._refreshing = in_background(self.refresh)
        self._refreshing.add_done_callback(_log_failure)

    def refresh(self) -> None:
        """Metrics, promotion and the online-error check, from the store's recent rides."""
        # Each version's recent rides, read once (through an index, whatever the history): the
        # windowed figures and the challengers' comparison both come from them.
        recent = self.store.recent_errors(self.config.window_rides)
        window = evaluation_of(recent)
        total = self.store.evaluation()
        for scope, frame in (("window", window), ("total", total)):
            for row in frame.to_dict(orient="records"):
                labels = (row["target"], row["model_version"], row["role"], scope)
                self.metrics.online_mae.labels(*labels).set(row["mae"])
                self.metrics.online_rmse.labels(*labels).set(row["rmse"])
                self.metrics.online_count.labels(*labels).set(row["count"])
        self._act_on_challengers(recent)
        self._check_online_error(window)

    def _act_on_challengers(self, recent: pd.DataFrame) -> None:
        # The recent rides of each version: how they do now (the full history is the report's).
        comparisons = compare_challengers(
            recent,
            self.config.promote_margin,
            self.config.promote_min_rides,
        )
        for comparison in comparisons:
            key = (comparison.model_name, comparison.challenger_version)
            if not comparison.recommend or key in self._recommended:
                continue
            self._recommended.add(key)
            logger.warning(
                "%s v%s beats the champion v%s on %d rides (RMSE %.3f vs %.3f): promotion %s",
                comparison.model_name,
                comparison.challenger_version,
                comparison.champion_version,
                comparison.rides,
                comparison.challenger_rmse,
                comparison.champion_rmse,
                "follows" if self.config.auto_promote else "recommended",
            )
            if self.config.auto_promote:
                self._promote(comparison.model_name, comparison.challenger_version)

    def _promote(self, name: str, version: str) -> None:
        try:
            client = mlflow_client(self.settings.mlflow)
            # Only the version still holding @challenger: an older one lost its chance.
            if alias_version(client, name, CHALLENGER) == version:
                promote(client, name, version)
        except Exception:  # the registry being down must not stop decisions; retried next time
            logger.exception("promoting %s v%s failed", name, version)
            self._recommended.discard((name, version))

    def _check_online_error(self, window: pd.DataFrame) -> None:
        needed = min(self.config.window_rides, self.config.promote_min_rides)
        for row in window.to_dict(orient="records"):
            if row["role"] != "champion" or row["count"] < needed:
                continue
            name, version = str(row["model_name"]), str(row["model_version"])
            validation = self._validation_mae(name, version)
            if validation is None:
                continue
            mae = float(row["mae"])
            if mae > validation * self.config.error_ratio_threshold:
                reason = (
                    f"online error: {name} v{version} MAE {mae:.3f} over the last "
                    f"{row['count']} rides vs {validation:.3f} at validation "
                    f"(threshold x{self.config.error_ratio_threshold})"
                )
                self.retrainer.trigger("online_error", reason, [str(row["target"])])

    def _validation_mae(self, name: str, version: str) -> float | None:
        """A champion's validation MAE once the registry has answered (None until then, and
        when it was not logged); a failed read is retried at the next refresh."""
        key = (name, version)
        lookup = self._validation.get(key)
        if lookup is None and self._champions is not None and not self._champions.done():
            return None  # the champions are being read: one registry read at a time
        if lookup is None:
            self._validation[key] = in_background(
                validation_mae, self.settings.mlflow.resolved_tracking_uri, name, version
            )
            return None
        if not lookup.done():
            return None
        try:
            return lookup.result()
        except Exception as exc:  # the registry being down must not stop decisions
            logger.warning("no validation MAE for %s v%s: %s", name, version, exc)
            del self._validation[key]
            return None


def validation_mae(tracking_uri: str, name: str, version: str, client: Any = None) -> float | None:
    """The validation MAE logged with a model version at training (None if not logged)."""
    from ridestream.settings import MlflowSettings

    client = client or mlflow_client(MlflowSettings(tracking_uri=tracking_uri))
    run_id = client.get_model_version(name, version).run_id
    value = client.get_run(run_id).data.metrics.get("valid_mae")
    return float(value) if value is not None else None


def champion_validation_maes(tracking_uri: str) -> dict[tuple[str, str], float | None]:
    """Each target's champion (name, version) and its validation MAE."""
    from ridestream.settings import MlflowSettings

    client = mlflow_client(MlflowSettings(tracking_uri=tracking_uri))
    maes = {}
    for target in TARGETS:
        name = MODEL_NAMES[target]
        version = alias_version(client, name, CHAMPION)
        if version is not None:
            maes[name, version] = validation_mae(tracking_uri, name, version, client)
    return maes


def report(store: DecisionStore, settings: Settings, output: Path | None) -> dict[str, Any]:
    """The evaluation table (window and total), the challenger comparisons and, with ``output``,
    a PNG of the error over time per model version."""
    config = settings.decisions.evaluation
    total = store.evaluation()
    window = store.evaluation(config.window_rides)
    comparisons = compare_challengers(
        store.errors_frame(), config.promote_margin, config.promote_min_rides
    )
    result: dict[str, Any] = {
        "total": total.to_dict(orient="records"),
        "window": window.to_dict(orient="records"),
        "window_rides": config.window_rides,
        "comparisons": [c.as_dict() for c in comparisons],
        "counts": store.counts(),
    }
    if output is not None:
        result["plot"] = str(plot_errors(store, output))
    return result


def plot_errors(store: DecisionStore, path: Path, rolling: int = 200) -> Path:
    """Rolling MAE over evaluation order, one line per model version, a panel per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    errors = store.errors_frame()
    figure, axes = plt.subplots(len(TARGETS), 1, figsize=(9, 3 * len(TARGETS)), squeeze=False)
    for axis, target in zip(axes[:, 0], TARGETS, strict=True):
        subset = errors[errors["target"] == target].sort_values(["evaluated_at_ms", "ride_id"])
        # One x axis for every version: the ride's place in evaluation order, so a challenger
        # that joined late is drawn where it joined, beside the champion of the same rides.
        subset = subset.assign(position=pd.factorize(subset["ride_id"])[0])
        for (version, role), group in subset.groupby(["model_version", "role"], sort=True):
            group = group.sort_values("position")
            absolute = (group["predicted"] - group["actual"]).abs()
            axis.plot(
                group["position"],
                absolute.rolling(min(rolling, len(absolute)), min_periods=1).mean(),
                label=f"v{version} ({role})",
            )
        axis.set_title(f"{MODEL_NAMES[target]}: rolling MAE over the last {rolling} rides")
        axis.set_xlabel("rides evaluated")
        axis.set_ylabel("MAE")
        if not subset.empty:
            axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def comparison_text(comparison: dict[str, Any]) -> str:
    """One line of a report: a challenger against its champion, and the advice."""
    c = comparison
    verdict = "promote" if c["recommend"] else "keep the champion"
    return (
        f"{c['model_name']} challenger v{c['challenger_version']} vs champion "
        f"v{c['champion_version']}: RMSE {c['challenger_rmse']:.3f} vs {c['champion_rmse']:.3f} "
        f"on {c['rides']} rides{'' if c['paired'] else ' each (A/B, unpaired)'} → {verdict}"
    )
