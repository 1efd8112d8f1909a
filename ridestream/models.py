"""Models for services: the native LightGBM booster of a registry alias, swapped when it moves.

``AliasedModel("ride-duration", "champion")`` loads ``models:/ride-duration@champion`` as the
booster itself (no pyfunc wrapper on the hot path) and re-reads the alias every poll interval; a
new version is loaded off to the side and swapped in with one reference assignment, so a caller
that takes ``model.current`` at the start of a batch uses one version for the whole batch. With
``RIDESTREAM_MODELS__BACKEND=lleaves`` the booster is compiled to native code by lleaves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ridestream.exceptions import RidestreamError
from ridestream.features import FEATURES, PRIOR_FEATURES, DistancePrior, select
from ridestream.registry import CHAMPION, alias_version
from ridestream.settings import ModelSettings

logger = logging.getLogger(__name__)


class ModelNotFoundError(RidestreamError):
    """The registry has no version behind the requested alias."""


@dataclass(frozen=True)
class LoadedModel:
    """One model version, ready to predict on the shared feature matrix."""

    name: str
    version: str
    role: str
    features: tuple[str, ...]
    booster: Any = field(repr=False)
    backend: str = "booster"
    _predict: Callable[[np.ndarray], np.ndarray] = field(repr=False, default=None)  # type: ignore[assignment]
    prior: DistancePrior | None = field(repr=False, default=None)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predictions for a matrix of :data:`ridestream.features.FEATURES` columns (as
        ``build_features`` returns it: this model's own distance prior is applied here)."""
        if self.prior is not None:
            features = self.prior.apply(features)
        return non_negative(self._predict(select(features, self.features)))


def non_negative(predictions: np.ndarray) -> np.ndarray:
    """Floor predictions at zero: a duration, a cost and a tip are never negative (an L1 tip
    model, for one, lands a hair below zero on cash rides)."""
    floored: np.ndarray = np.maximum(predictions, 0.0)
    return floored


def _booster_predict(booster: Any, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    def predict(matrix: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(matrix, num_threads=threads))

    return predict


def _lleaves_predict(booster: Any, cache: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    try:
        import lleaves
    except ImportError as exc:
        raise RidestreamError(
            "RIDESTREAM_MODELS__BACKEND=lleaves needs the compiled extra: pip install 'ridestream[compiled]'"
        ) from exc
    model_text = booster.model_to_string()
    # Keyed by content and CPU, never by name/version alone: lleaves trusts whatever object file
    # it finds, and a "v1" of another store (or another machine) is another model.
    key = hashlib.sha256(
        (model_text + platform.machine() + platform.processor()).encode()
    ).hexdigest()[:24]
    folder = cache / key
    folder.mkdir(parents=True, exist_ok=True)
    model_file, object_file = folder / "model.txt", folder / "model.o"
    if not model_file.exists():
        _write_atomically(model_file, model_text.encode())
    compiled = lleaves.Model(model_file=str(model_file))
    if object_file.exists():
        compiled.compile(cache=str(object_file))
    else:  # compile next to it, then rename: a concurrent loader never reads half a file
        partial = folder / f"model.{os.getpid()}.o"
        compiled.compile(cache=str(partial))
        partial.replace(object_file)

    def predict(matrix: np.ndarray) -> np.ndarray:
        return np.asarray(compiled.predict(matrix, n_jobs=threads))

    return predict


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(path)


def load_version(
    client: Any, name: str, version: str, role: str, settings: ModelSettings, *, threads: int = 1
) -> LoadedModel:
    """Load one registered version as its native booster (optionally compiled).

    ``threads=1`` suits services (small batches, where OpenMP start-up costs more than it saves,
    and scaling is by processes); offline scoring passes 0, every core.
    """
    import mlflow.lightgbm

    booster = mlflow.lightgbm.load_model(f"models:/{name}/{version}")
    features = tuple(booster.feature_name())
    unknown = set(features) - set(FEATURES)
    if unknown:
        raise RidestreamError(
            f"{name} v{version} wants features the feature function lacks: {sorted(unknown)}"
        )
    prior = load_prior(client, name, version) if set(features) & set(PRIOR_FEATURES) else None
    if settings.backend == "lleaves":
        # lleaves counts threads from 1; LightGBM's 0 (= every core) maps to its default.
        predict = _lleaves_predict(
            booster, settings.cache_dir / name, threads or (os.cpu_count() or 1)
        )
    else:
        predict = _booster_predict(booster, threads)
    logger.info(
        "loaded model=%s version=%s role=%s backend=%s", name, version, role, settings.backend
    )
    return LoadedModel(name, version, role, features, booster, settings.backend, predict, prior)


PRIOR_ARTIFACT = "distance_prior.json"


def load_prior(client: Any, name: str, version: str) -> DistancePrior:
    """The distance prior a version was trained with (an artifact of its training run)."""
    run_id = client.get_model_version(name, version).run_id
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = client.download_artifacts(run_id, PRIOR_ARTIFACT, folder)
            data = json.loads(Path(path).read_text())
    except Exception as exc:  # mlflow raises several kinds for a missing artifact
        raise RidestreamError(
            f"{name} v{version} reads {PRIOR_FEATURES} but its run {run_id} has no "
            f"{PRIOR_ARTIFACT}: {exc}"
        ) from exc
    return DistancePrior.from_dict(data)


class AliasedModel:
    """The model behind a registry alias, kept current by polling."""

    def __init__(
        self, client: Any, name: str, alias: str, settings: ModelSettings, *, required: bool = True
    ):
        """Load the alias now; ``required=False`` allows an alias that does not exist (yet)."""
        self.client = client
        self.name = name
        self.alias = alias
        self.settings = settings
        self._current: LoadedModel | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.refresh()
        if required and self._current is None:
            raise ModelNotFoundError(
                f"no version of {name} has the alias @{alias}: train or promote one"
            )

    @property
    def current(self) -> LoadedModel | None:
        """The version in use now; take it once per batch."""
        return self._current

    def refresh(self) -> bool:
        """Re-read the alias; load and swap in a new version. True when the version changed."""
        with self._lock:  # one load at a time, whoever asks
            version = alias_version(self.client, self.name, self.alias)
            current = self._current
            if version == (current.version if current else None):
                return False
            if version is None:
                if self.alias == CHAMPION and current is not None:
                    # Serving on without a champion is worse than serving the last one.
                    logger.warning(
                        "@champion of %s is gone; keeping v%s", self.name, current.version
                    )
                    return False
                logger.warning("alias @%s of %s is gone; shadowing stops", self.alias, self.name)
                self._current = None
                return True
            loaded = load_version(self.client, self.name, version, self.alias, self.settings)
            self._current = loaded  # the swap: one reference assignment
            logger.info(
                "model=%s alias=%s now version=%s (was %s)",
                self.name,
                self.alias,
                version,
                current.version if current else None,
            )
            return True

    def start_polling(self) -> None:
        """Poll in a background thread, so loading never stalls the caller's loop."""
        if self._poller is not None:
            return

        def poll() -> None:
            while not self._stop.wait(self.settings.poll_interval_s):
                try:
                    self.refresh()
                except Exception:  # a registry hiccup must not kill serving: keep the old model
                    logger.exception(
                        "refreshing %s@%s failed; keeping the current version",
                        self.name,
                        self.alias,
                    )

        self._poller = threading.Thread(
            target=poll, name=f"poll-{self.name}-{self.alias}", daemon=True
        )
        self._poller.start()

    def stop(self) -> None:
        """Stop the background poller."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
            self._poller = None
        self._stop.clear()
