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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ridestream.exceptions import RidestreamError
from ridestream.ml.distance_prior import DistancePrior
from ridestream.ml.features import FEATURES, PRIOR_FEATURES, select
from ridestream.ml.registry import CHAMPION, alias_version
from ridestream.ml.single_row import SingleRowPredictor
from ridestream.settings import ModelSettings

logger = logging.getLogger(__name__)


class ModelNotFoundError(RidestreamError):
    """The registry has no version behind the requested alias."""


@dataclass(frozen=True)
class LoadedModel:
    """One model version, ready to predict on the shared feature matrix.

    A version may come with companions from its training run: the distance prior it reads
    (``distance_prior.json``), and a *scale* model (``scale/model.txt``): then the booster
    predicts a rate and the answer is rate × scale, e.g. the tip as a share of the ride's
    expected cost (``training.specs``)."""

    name: str
    version: str
    role: str
    features: tuple[str, ...]
    booster: Any = field(repr=False)
    backend: str = "booster"
    _predict: Callable[[np.ndarray], np.ndarray] = field(repr=False, default=None)  # type: ignore[assignment]
    prior: DistancePrior | None = field(repr=False, default=None)
    scale_features: tuple[str, ...] = ()
    _scale: Callable[[np.ndarray], np.ndarray] | None = field(repr=False, default=None)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predictions for a matrix of :data:`ridestream.ml.features.FEATURES` columns (as
        ``build_features`` returns it: this model's own distance prior is applied here)."""
        prior = self.prior
        if prior is None:
            values = self._predict(select(features, self.features))
            if self._scale is not None:
                scale = self._scale(select(features, self.scale_features))
                values = values * np.maximum(scale, SCALE_FLOOR)
        else:
            pair = prior.pair_miles(features)  # once for both of a rate model's boosters
            values = self._predict(prior.select(features, self.features, pair))
            if self._scale is not None:
                scale = self._scale(prior.select(features, self.scale_features, pair))
                values = values * np.maximum(scale, SCALE_FLOOR)
        return non_negative(values)


# The smallest scale a rate is multiplied by (a cost estimate near zero would make a huge rate).
SCALE_FLOOR = 1.0
PRIOR_ARTIFACT = "distance_prior.json"
SCALE_ARTIFACT = "scale/model.txt"


def compose(
    name: str,
    version: str,
    role: str,
    booster: Any,
    prior: DistancePrior | None = None,
    scale: Any = None,
    *,
    predictor: Callable[[Any], Callable[[np.ndarray], np.ndarray]] | None = None,
    backend: str = "booster",
) -> LoadedModel:
    """A LoadedModel of boosters in hand; ``predictor`` turns a booster into its predict function
    (default: the native booster on every core)."""
    make = predictor or (lambda b: _booster_predict(b, 0))
    features = tuple(booster.feature_name())
    scale_features = tuple(scale.feature_name()) if scale is not None else ()
    for names in (features, scale_features):
        unknown = set(names) - set(FEATURES)
        if unknown:
            raise RidestreamError(
                f"{name} v{version} wants features the feature function lacks: {sorted(unknown)}"
            )
    if set(features + scale_features) & set(PRIOR_FEATURES) and prior is None:
        raise RidestreamError(f"{name} v{version} reads {PRIOR_FEATURES} but has no distance prior")
    return LoadedModel(
        name, version, role, features, booster, backend, make(booster), prior, scale_features,
        make(scale) if scale is not None else None,
    )  # fmt: skip


def non_negative(predictions: np.ndarray) -> np.ndarray:
    """Floor predictions at zero: a duration, a cost and a tip are never negative (an L1 tip
    model, for one, lands a hair below zero on cash rides)."""
    floored: np.ndarray = np.maximum(predictions, 0.0)
    return floored


def _booster_predict(booster: Any, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    one = SingleRowPredictor(booster, booster.num_feature())

    def predict(matrix: np.ndarray) -> np.ndarray:
        if len(matrix) == 1:  # the gateway and a quiet stream: one ride per call
            return one(matrix)
        return np.asarray(booster.predict(matrix, num_threads=threads))

    return predict


def _lleaves_import() -> Any:
    try:
        import lleaves
    except ImportError as exc:
        raise RidestreamError(
            "RIDESTREAM_MODELS__BACKEND=lleaves needs the compiled extra: pip install 'ridestream[compiled]'"
        ) from exc
    return lleaves


def _compiled_files(booster: Any, cache: Path) -> tuple[str, Path, Path]:
    """A booster's text and where its compiled form lives in the cache (model.txt, model.o)."""
    model_text = booster.model_to_string()
    # Keyed by content and CPU, never by name/version alone: lleaves trusts whatever object file
    # it finds, and a "v1" of another store (or another machine) is another model.
    key = hashlib.sha256(
        (model_text + platform.machine() + platform.processor()).encode()
    ).hexdigest()[:24]
    folder = cache / key
    return model_text, folder / "model.txt", folder / "model.o"


def is_compiled(booster: Any, cache: Path) -> bool:
    """Whether the cache holds this booster's compiled object (loading it takes milliseconds)."""
    return _compiled_files(booster, cache)[2].exists()


def _lleaves_predict(booster: Any, cache: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    lleaves = _lleaves_import()
    model_text, model_file, object_file = _compiled_files(booster, cache)
    model_file.parent.mkdir(parents=True, exist_ok=True)
    if not model_file.exists():
        _write_atomically(model_file, model_text.encode())
    compiled = lleaves.Model(model_file=str(model_file))
    if object_file.exists():
        compiled.compile(cache=str(object_file))
    else:  # compile next to it, then rename: a concurrent loader never reads half a file
        partial = model_file.parent / f"model.{os.getpid()}.{threading.get_ident()}.o"
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
    client: Any,
    name: str,
    version: str,
    role: str,
    settings: ModelSettings,
    *,
    threads: int = 1,
    compile_now: bool = True,
) -> LoadedModel:
    """Load one registered version as its native booster (optionally compiled), with the
    companions its training run logged beside it.

    ``threads=1`` suits services (small batches, where OpenMP start-up costs more than it saves,
    and scaling is by processes); offline scoring passes 0, every core. With the lleaves backend
    and ``compile_now=False``, a version whose compiled form is not in the cache yet comes back
    on the native booster (``backend`` says which): compiling takes minutes on a small machine.
    """
    import lightgbm as lgb
    import mlflow.lightgbm

    booster = mlflow.lightgbm.load_model(f"models:/{name}/{version}")
    run_id = client.get_model_version(name, version).run_id
    present = {a.path for a in client.list_artifacts(run_id)}
    prior = scale = None
    with tempfile.TemporaryDirectory() as folder:
        if PRIOR_ARTIFACT in present:
            path = client.download_artifacts(run_id, PRIOR_ARTIFACT, folder)
            prior = DistancePrior.from_dict(json.loads(Path(path).read_text()))
        if SCALE_ARTIFACT.split("/")[0] in present:
            scale = lgb.Booster(
                model_file=client.download_artifacts(run_id, SCALE_ARTIFACT, folder)
            )
    backend = settings.backend
    cache = settings.cache_dir / name
    if backend == "lleaves" and not compile_now:
        boosters = [booster] if scale is None else [booster, scale]
        if not all(is_compiled(b, cache) for b in boosters):
            backend = "booster"
    if backend == "lleaves":
        # lleaves counts threads from 1; LightGBM's 0 (= every core) maps to its default.
        cores = threads or (os.cpu_count() or 1)

        def predictor(b: Any) -> Callable[[np.ndarray], np.ndarray]:
            return _lleaves_predict(b, cache, cores)
    else:

        def predictor(b: Any) -> Callable[[np.ndarray], np.ndarray]:
            return _booster_predict(b, threads)

    model = compose(name, version, role, booster, prior, scale, predictor=predictor,
                    backend=backend)  # fmt: skip
    logger.info(
        "loaded model=%s version=%s role=%s backend=%s%s", name, version, role, backend,
        " (rate × scale)" if scale is not None else "",
    )  # fmt: skip
    return model


class AliasedModel:
    """The model behind a registry alias, kept current by polling.

    With the lleaves backend, a version not compiled yet on this machine serves on its booster at
    once and is compiled in a background thread (into the shared cache, where the next replica
    finds it), then swapped in: a new replica serves within seconds, not minutes."""

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
        # A version compiling while its booster serves.
        self.compiling: threading.Thread | None = None
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
            loaded = load_version(
                self.client, self.name, version, self.alias, self.settings, compile_now=False
            )
            self._current = loaded  # the swap: one reference assignment
            if loaded.backend != self.settings.backend:
                self._compile_in_background(loaded)
            logger.info(
                "model=%s alias=%s now version=%s (was %s)",
                self.name,
                self.alias,
                version,
                current.version if current else None,
            )
            return True

    def _compile_in_background(self, serving: LoadedModel) -> None:
        """Compile ``serving``'s version while its booster serves; swap the compiled one in if
        that version is still the one in use."""

        def compile_and_swap() -> None:
            started = time.monotonic()
            try:
                compiled = load_version(
                    self.client, self.name, serving.version, self.alias, self.settings
                )
            except Exception:
                logger.exception("compiling %s v%s failed; the booster serves on", self.name,
                                 serving.version)  # fmt: skip
                return
            with self._lock:
                if self._current is serving:
                    self._current = compiled
                    logger.info(
                        "model=%s version=%s compiled in %.0f s; now served by %s",
                        self.name, serving.version, time.monotonic() - started, compiled.backend,
                    )  # fmt: skip

        self.compiling = threading.Thread(
            target=compile_and_swap, name=f"compile-{self.name}-{serving.version}", daemon=True
        )
        self.compiling.start()

    def wait_compiled(self, timeout_s: float | None = None) -> LoadedModel | None:
        """Wait for a background compile, if one runs; the version in use then."""
        if self.compiling is not None:
            self.compiling.join(timeout_s)
        return self._current

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
