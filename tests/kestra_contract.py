"""A stand-in that speaks Kestra's published REST contract, for testing our KestraClient.

The Kestra server cannot be obtained on this project's machines: its executable jar
(``io.kestra:kestra``) is not on the Maven Central mirror they reach, and Kestra never publishes
the ``webserver`` module that serves the API (see the README). So the client is tested against
this real HTTP server on 127.0.0.1 that implements the parts of the contract the client uses, as
Kestra's controllers define them: tenant paths ``/api/v1/main/...``; flows as ``application/x-yaml``
(PUT to update answers 404 for an unknown flow, POST creates); executions started with multipart
inputs, moving CREATED → RUNNING → SUCCESS; logs per execution; HTTP Basic auth answering 401
with an empty body; Micronaut ``JsonError`` bodies for 404 and 422. It does not run task code: a
shell task's rendered commands are logged as what would run.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

KNOWN_TASKS = {
    "io.kestra.plugin.core.log.Log",
    "io.kestra.plugin.scripts.shell.Commands",
}
_INPUT = re.compile(r"\{\{\s*inputs\.(\w+)\s*\}\}")
_VARIABLE = re.compile(r"\{\{\s*render\(vars\.(\w+)\)\s*\}\}")
# Only the "inputs.x ?? (trigger expression)" form the project's flow uses, for runs with inputs.
_INPUT_OR_TRIGGER = re.compile(r"^\{\{\s*inputs\.(\w+)\s*\?\?")


class KestraContract:
    """Holds flows and executions; serves them over HTTP on a free loopback port."""

    def __init__(
        self, username: str = "admin@ridestream.io", password: str = "Ridestream1"
    ) -> None:
        self.username, self.password = username, password
        self.flows: dict[tuple[str, str], dict[str, Any]] = {}
        self.executions: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> KestraContract:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- behaviour ------------------------------------------------------------------------------
    def validate(self, source: str) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
        try:
            flow = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            return None, [{"path": "", "message": f"YAML: {exc}"}]
        errors = []
        if not isinstance(flow, dict):
            return None, [{"path": "", "message": "a flow is a mapping"}]
        for key in ("id", "namespace", "tasks"):
            if not flow.get(key):
                errors.append({"path": key, "message": "must not be null"})
        for i, task in enumerate(flow.get("tasks") or []):
            if task.get("type") not in KNOWN_TASKS:
                errors.append(
                    {"path": f"tasks[{i}].type", "message": f"Invalid type: {task.get('type')}"}
                )
        return flow, errors

    def execute(self, execution_id: str) -> None:
        """Walk the flow's tasks, logging what each does, then succeed."""
        execution = self.executions[execution_id]
        flow = self.flows[(execution["namespace"], execution["flowId"])]["definition"]
        time.sleep(0.2)
        execution["state"]["current"] = "RUNNING"
        inputs = execution["inputs"]
        variables = {}
        for name, expression in (flow.get("variables") or {}).items():
            match = _INPUT_OR_TRIGGER.match(expression)
            variables[name] = str(inputs.get(match.group(1)) or "") if match else expression

        def render(text: str) -> str:
            text = _VARIABLE.sub(lambda m: variables[m.group(1)], text)
            return _INPUT.sub(lambda m: str(inputs.get(m.group(1), "")), text)

        for task in flow["tasks"]:
            if task["type"].endswith("log.Log"):
                self._log(execution_id, task["id"], render(task["message"]))
            else:
                for command in task.get("commands", []):
                    self._log(
                        execution_id, task["id"], "would run: " + " ".join(render(command).split())
                    )
            time.sleep(0.1)
        execution["state"]["current"] = "SUCCESS"

    def _log(self, execution_id: str, task_id: str, message: str) -> None:
        self.logs[execution_id].append(
            {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "level": "INFO",
                "taskId": task_id,
                "message": message,
            }
        )

    # -- HTTP -----------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        contract = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(
                self, status: int, body: Any = None, headers: dict[str, str] | None = None
            ) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(
                self, status: int, message: str, errors: list[dict[str, str]] | None = None
            ) -> None:
                body: dict[str, Any] = {"message": message, "_links": {"self": {"href": self.path}}}
                if errors:
                    body["_embedded"] = {"errors": errors}
                self._send(status, body)

            def _authorized(self) -> bool:
                expected = base64.b64encode(
                    f"{contract.username}:{contract.password}".encode()
                ).decode()
                if self.headers.get("Authorization") == f"Basic {expected}":
                    return True
                self._send(401, None, {"WWW-Authenticate": 'Basic realm="Kestra"'})
                return False

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _route(self, method: str) -> None:
                contract.requests.append((method, self.path))
                if method == "GET" and self.path == "/api/v1/configs":
                    return self._send(200, {"version": "contract", "isBasicAuthInitialized": True})
                if not self.path.startswith("/api/v1/main/"):
                    return self._error(404, "Not Found")
                if not self._authorized():
                    return None
                parts = self.path.removeprefix("/api/v1/main/").split("?")[0].split("/")
                if parts[0] == "flows":
                    return self._flows(method, parts[1:])
                if parts[0] == "executions":
                    return self._executions(method, parts[1:])
                if parts[0] == "logs" and method == "GET" and len(parts) == 2:
                    if parts[1] not in contract.executions:
                        return self._error(404, "Not Found: execution not found")
                    return self._send(200, contract.logs[parts[1]])
                return self._error(404, "Not Found")

            def _flows(self, method: str, rest: list[str]) -> None:
                if self.headers.get("Content-Type", "").split(";")[0] != "application/x-yaml":
                    return self._error(415, "Unsupported Media Type")
                source = self._body().decode()
                flow, errors = contract.validate(source)
                if errors or flow is None:
                    return self._error(
                        422,
                        "Invalid entity: "
                        + ", ".join(e["path"] + ": " + e["message"] for e in errors),
                        errors,
                    )
                key = (flow["namespace"], flow["id"])
                if method == "PUT" and len(rest) == 2:
                    if tuple(rest) != key:
                        return self._error(
                            422, "Invalid entity: flow id and namespace differ from the path"
                        )
                    if key not in contract.flows:
                        return self._error(404, "Not Found: Flow not found")
                    stored = contract.flows[key]
                    stored.update(definition=flow, source=source, revision=stored["revision"] + 1)
                elif method == "POST" and not rest:
                    if key in contract.flows:
                        return self._error(
                            422, f"Invalid entity: flow {key[0]}.{key[1]} already exists"
                        )
                    contract.flows[key] = {"definition": flow, "source": source, "revision": 1}
                else:
                    return self._error(405, "Method Not Allowed")
                stored = contract.flows[key]
                return self._send(
                    200,
                    {
                        "id": key[1],
                        "namespace": key[0],
                        "revision": stored["revision"],
                        "source": source,
                    },
                )

            def _executions(self, method: str, rest: list[str]) -> None:
                if method == "GET" and len(rest) == 1:
                    execution = contract.executions.get(rest[0])
                    return (
                        self._send(200, execution)
                        if execution
                        else self._error(404, "Not Found: execution not found")
                    )
                if method != "POST" or len(rest) != 2:
                    return self._error(405, "Method Not Allowed")
                key = (rest[0], rest[1])
                if key not in contract.flows:
                    return self._error(404, "Not Found: Requested Flow is not found.")
                content_type = self.headers.get("Content-Type", "")
                form = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {content_type}\r\n\r\n".encode() + self._body()
                )
                given = {
                    part.get_param("name", header="content-disposition"): part.get_content()
                    for part in form.iter_parts()
                    if part.get_param("name", header="content-disposition")
                }
                declared = contract.flows[key]["definition"].get("inputs", [])
                inputs = {i["id"]: given.get(i["id"], i.get("defaults")) for i in declared}
                execution_id = uuid.uuid4().hex[:22]
                contract.executions[execution_id] = {
                    "id": execution_id, "namespace": key[0], "flowId": key[1], "inputs": inputs,
                    "state": {"current": "CREATED"}, "flowRevision": contract.flows[key]["revision"],
                }  # fmt: skip
                contract.logs[execution_id] = []
                threading.Thread(target=contract.execute, args=(execution_id,), daemon=True).start()
                return self._send(200, contract.executions[execution_id])

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PUT(self) -> None:
                self._route("PUT")

        return Handler
