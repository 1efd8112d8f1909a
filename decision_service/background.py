"""Registry reads off the decision loop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


def in_background(function: Callable[..., T], *args: Any) -> Future[T]:
    """``function(*args)`` in a daemon thread: a registry call that hangs (a remote server's
    HTTP retries last minutes) must not hold the process's exit, as a pool's worker would."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as exc:  # handed to whoever reads the future
            future.set_exception(exc)

    threading.Thread(target=run, name=f"background-{function.__name__}", daemon=True).start()
    return future
