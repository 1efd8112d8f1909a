"""Our client for Kestra's REST API (httpx): deploy a flow, run it with inputs, follow it.

Kestra OSS serves one tenant, ``main``, under ``/api/v1/{tenant}/...``. Flows are sent as YAML
(``application/x-yaml``); an update is ``PUT .../flows/{namespace}/{id}`` and answers 404 for a
flow that does not exist yet, so create-or-update is PUT, then POST on 404. Executions take their
inputs as multipart form fields. Errors come back as Micronaut ``JsonError`` bodies
(``{"message": ..., "_embedded": {"errors": [{"message", "path"}]}}``), 401 with an empty body for
bad credentials; each becomes one of the exceptions below with the server's own words in it.

The ``kestra`` package on PyPI is the other half: code running *inside* a Kestra task uses it to
hand outputs and metrics back (see ``ridestream train``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Self

import httpx

from ridestream.exceptions import RidestreamError
from ridestream.settings import KestraSettings

logger = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "SKIPPED"})


class KestraError(RidestreamError):
    """Kestra refused or failed a request; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KestraUnreachableError(KestraError):
    """Nothing answered at the configured URL."""


class KestraAuthError(KestraError):
    """The server refused the credentials (401)."""


class FlowNotFoundError(KestraError):
    """The flow (or execution) does not exist (404)."""


class InvalidFlowError(KestraError):
    """The flow definition was rejected (422); ``violations`` lists path → message."""

    def __init__(self, message: str, violations: list[dict[str, str]]) -> None:
        super().__init__(message, 422)
        self.violations = violations


@dataclass(frozen=True)
class Execution:
    """An execution's identity and current state."""

    id: str
    namespace: str
    flow_id: str
    state: str
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """True once the state is terminal."""
        return self.state in TERMINAL_STATES

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Execution:
        """Parse Kestra's Execution JSON."""
        return cls(
            id=body["id"],
            namespace=body.get("namespace", ""),
            flow_id=body.get("flowId", ""),
            state=body.get("state", {}).get("current", "UNKNOWN"),
            inputs=body.get("inputs") or {},
            outputs=body.get("outputs") or {},
        )


def _error_message(response: httpx.Response) -> tuple[str, list[dict[str, str]]]:
    try:
        body = response.json()
    except ValueError:
        return (response.text.strip() or response.reason_phrase), []
    message = body.get("message", response.reason_phrase) if isinstance(body, dict) else str(body)
    errors = body.get("_embedded", {}).get("errors", []) if isinstance(body, dict) else []
    return message, [
        {"path": str(e.get("path", "")), "message": str(e.get("message", ""))} for e in errors
    ]


class KestraClient:
    """A thin, typed client over Kestra's REST API."""

    def __init__(
        self, settings: KestraSettings, transport: httpx.BaseTransport | None = None
    ) -> None:
        if not settings.url:
            raise KestraError("no Kestra configured: set RIDESTREAM_KESTRA__URL (and credentials)")
        auth = None
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else ""
            auth = httpx.BasicAuth(settings.username, password)
        self.settings = settings
        self._http = httpx.Client(
            base_url=settings.url.rstrip("/"),
            auth=auth,
            timeout=settings.timeout_s,
            transport=transport,
        )

    def _path(self, *parts: str) -> str:
        return "/".join(["/api/v1", self.settings.tenant, *parts])

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise KestraUnreachableError(
                f"Kestra at {self.settings.url} is unreachable: {exc}"
            ) from exc
        if response.is_success:
            return response
        message, violations = _error_message(response)
        where = f"{method} {path}"
        if response.status_code == 401:
            raise KestraAuthError(f"Kestra refused the credentials for {where} (401)", 401)
        if response.status_code == 404:
            raise FlowNotFoundError(f"{where}: {message}", 404)
        if response.status_code == 422:
            details = "; ".join(f"{v['path']}: {v['message']}" for v in violations)
            raise InvalidFlowError(
                f"invalid flow: {message}{' (' + details + ')' if details else ''}", violations
            )
        raise KestraError(
            f"{where} failed with {response.status_code}: {message}", response.status_code
        )

    def server_version(self) -> str:
        """The server's version (``GET /api/v1/configs``, open without credentials)."""
        return str(self._request("GET", "/api/v1/configs").json().get("version", "unknown"))

    def deploy_flow(self, source: str) -> dict[str, Any]:
        """Create or update a flow from its YAML; returns Kestra's flow JSON (id, revision...)."""
        import yaml

        definition = yaml.safe_load(source)
        if (
            not isinstance(definition, dict)
            or "id" not in definition
            or "namespace" not in definition
        ):
            raise InvalidFlowError("invalid flow: the YAML needs an id and a namespace", [])
        headers = {"Content-Type": "application/x-yaml"}
        try:
            response = self._request(
                "PUT",
                self._path("flows", definition["namespace"], definition["id"]),
                content=source,
                headers=headers,
            )
        except FlowNotFoundError:
            response = self._request("POST", self._path("flows"), content=source, headers=headers)
        flow: dict[str, Any] = response.json()
        logger.info(
            "deployed flow=%s.%s revision=%s",
            flow.get("namespace"),
            flow.get("id"),
            flow.get("revision"),
        )
        return flow

    def run(self, namespace: str, flow_id: str, inputs: dict[str, str] | None = None) -> Execution:
        """Start an execution with inputs (multipart form fields, as Kestra expects)."""
        files = {name: (None, str(value)) for name, value in (inputs or {}).items()}
        response = self._request(
            "POST", self._path("executions", namespace, flow_id), files=files or {"": (None, "")}
        )
        return Execution.from_json(response.json())

    def execution(self, execution_id: str) -> Execution:
        """The current state of an execution."""
        return Execution.from_json(
            self._request("GET", self._path("executions", execution_id)).json()
        )

    def wait(self, execution_id: str, timeout_s: float, poll_s: float = 1.0) -> Execution:
        """Poll until the execution ends; KestraError when it has not within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            execution = self.execution(execution_id)
            if execution.finished:
                return execution
            if time.monotonic() >= deadline:
                raise KestraError(
                    f"execution {execution_id} still {execution.state} after {timeout_s}s"
                )
            time.sleep(poll_s)

    def logs(self, execution_id: str) -> list[dict[str, Any]]:
        """An execution's log entries (timestamp, level, message, taskId...)."""
        entries: list[dict[str, Any]] = self._request(
            "GET", self._path("logs", execution_id)
        ).json()
        return entries

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
