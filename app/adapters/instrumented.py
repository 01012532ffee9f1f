"""Times every call an adapter answers, by backend, operation and outcome.

A proxy around the store, the ledger and the bus as the services see them,
so no adapter or service needs a line of timing code. Per call it costs two
clock reads and one histogram update in memory (a memory-mapped file under
gunicorn): no I/O, so it is fine on the request path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from app.observability.metrics import DEPENDENCY_SECONDS
from app.ports.errors import DependencyUnavailable

T = TypeVar("T")

# Housekeeping and long-running loops, not calls with a latency.
_UNTIMED = frozenset({"close", "consume_results", "consume_requests"})


class _Instrumented:
    def __init__(self, adapter: object, backend: str) -> None:
        self._adapter = adapter
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._adapter, name)
        if name.startswith("_") or name in _UNTIMED or not callable(value):
            return value
        timed = _timed(value, self._backend, name)
        # Cached on the proxy: the next lookup of `name` skips __getattr__.
        self.__dict__[name] = timed
        return timed


def _timed(method: Callable[..., Any], backend: str, operation: str) -> Callable[..., Any]:
    ok = DEPENDENCY_SECONDS.labels(backend=backend, operation=operation, outcome="ok")
    down = DEPENDENCY_SECONDS.labels(backend=backend, operation=operation, outcome="unavailable")
    error = DEPENDENCY_SECONDS.labels(backend=backend, operation=operation, outcome="error")

    def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = method(*args, **kwargs)
        except DependencyUnavailable:
            down.observe(time.perf_counter() - started)
            raise
        except Exception:
            error.observe(time.perf_counter() - started)
            raise
        ok.observe(time.perf_counter() - started)
        return result

    return call


def instrumented(adapter: T, backend: str) -> T:
    """`adapter`, with each public method call timed under `backend`."""
    return cast(T, _Instrumented(adapter, backend))
