"""``ridestream gateway``: the HTTP gateway on uvicorn.

Registered through the ``ridestream.commands`` entry points. The service module is imported when
the command runs, not when the root command starts: ``ridestream --help`` stays quick.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ridestream.cli.common import settings


def gateway(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Run the HTTP gateway (FastAPI on uvicorn) until SIGTERM/SIGINT."""
    import uvicorn

    from gateway.app import create_app

    current = settings()
    config = current.gateway
    uvicorn.run(
        create_app(current),
        host=host or config.host,
        port=config.port if port is None else port,
        log_level=current.log_level.lower(),
        # The gateway's own /metrics counts requests; uvicorn's access log would double the I/O.
        access_log=False,
        # Nothing here reads the client's address (A/B is sticky by client_id), so there is no
        # X-Forwarded-For to trust and rewrite on every request.
        proxy_headers=False,
        server_header=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``gateway`` to the root command."""
    app.command()(gateway)
