"""The model registry's vocabulary: model names, aliases, and the moves people and services make.

Moving an alias is a deployment: ``@champion`` is what serves, ``@challenger`` shadows it. Each
promotion records on the new champion which version it replaced (tag ``promoted_from``), so a
rollback walks back through the real history, however many promotions deep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ridestream.exceptions import RidestreamError

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTED_FROM = "promoted_from"

MODEL_NAMES = {
    "duration": "ride-duration",
    "cost": "ride-cost",
    "tip": "ride-tip",
    "simple": "ride-duration-simple",
}


class RegistryError(RidestreamError):
    """A registry move cannot be made (unknown model, version or alias)."""


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version as ``ridestream models list`` shows it."""

    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str | None
    created_ms: int
    tags: dict[str, str] = field(default_factory=dict)


def outdated_champions(client: Any, feature_set: str, names: Any = None) -> list[str]:
    """The models (default: all of the project's) without a champion trained on this feature set
    (``ridestream.ml.features.FEATURE_SET``, the ``feature_set`` tag of a version)."""
    outdated = []
    for name in names or MODEL_NAMES.values():
        version = alias_version(client, name, CHAMPION)
        tags = client.get_model_version(name, version).tags if version is not None else {}
        if tags.get("feature_set") != feature_set:
            outdated.append(name)
    return outdated


def is_missing(exc: Exception) -> bool:
    """True when an MlflowException says the model or alias does not exist (not an outage)."""
    code = getattr(exc, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc)
    )


def alias_version(client: Any, name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias (or model) does not exist.

    Any other registry failure (unreachable, 5xx, auth) is raised: a registry hiccup must not
    look like "no model".
    """
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if is_missing(exc):
            return None
        raise


def list_versions(client: Any, name: str) -> list[VersionInfo]:
    """Every version of a registered model, newest first."""
    from mlflow.exceptions import MlflowException

    try:
        # Search results leave aliases out; the registered model has them all.
        aliases_of: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases_of.setdefault(str(version), []).append(alias)
    except MlflowException as exc:
        if is_missing(exc):
            return []
        raise
    versions = client.search_model_versions(f"name = '{name}'")
    return sorted(
        (
            VersionInfo(
                name=v.name,
                version=str(v.version),
                aliases=tuple(sorted(aliases_of.get(str(v.version), []))),
                run_id=v.run_id,
                created_ms=v.creation_timestamp,
                tags=dict(v.tags),
            )
            for v in versions
        ),
        key=lambda v: int(v.version),
        reverse=True,
    )


def promote(client: Any, name: str, version: str) -> str | None:
    """Make ``version`` the champion; returns the version it replaced (None if none)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc
    previous = alias_version(client, name, CHAMPION)
    if previous == version:
        return previous
    if previous is not None:
        client.set_model_version_tag(name, version, PROMOTED_FROM, previous)
    client.set_registered_model_alias(name, CHAMPION, version)
    if alias_version(client, name, CHALLENGER) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    logger.info("promoted model=%s version=%s (was %s)", name, version, previous)
    return previous


def make_challenger(client: Any, name: str, version: str) -> None:
    """Point ``@challenger`` at a version (it will shadow the champion)."""
    client.set_registered_model_alias(name, CHALLENGER, version)
    logger.info("model=%s version=%s is the challenger", name, version)


def rollback(client: Any, name: str) -> tuple[str, str]:
    """Give ``@champion`` back to the version the current champion replaced: (from, to)."""
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back")
    previous = client.get_model_version(name, current).tags.get(PROMOTED_FROM)
    if previous is None:
        raise RegistryError(
            f"{name} v{current} replaced no earlier champion: nothing to roll back to"
        )
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, current, "rolled_back", "true")
    logger.info("rolled back model=%s from version=%s to version=%s", name, current, previous)
    return current, previous
