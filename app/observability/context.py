"""The log context: the HTTP trace id and the transfer's request id, per thread of work.

Context variables, so each gunicorn thread (and each consumer thread)
carries its own; the log filter copies them onto every record.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

# A caller's X-Request-Id goes into logs and bus messages: keep it short and
# free of anything a log parser or a terminal could trip over.
_SAFE_TRACE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_trace_id() -> str:
    return uuid.uuid4().hex


def valid_trace_id(candidate: object) -> str | None:
    """The candidate if it is a safe trace id, else None."""
    if isinstance(candidate, str) and _SAFE_TRACE_ID.fullmatch(candidate):
        return candidate
    return None


def trace_id_from_header(header: str | None) -> str:
    """The caller's X-Request-Id when it is safe, else a fresh one."""
    return valid_trace_id(header) or new_trace_id()


def current_trace_id() -> str | None:
    return trace_id_var.get()


@contextlib.contextmanager
def log_context(*, trace_id: str | None = None, request_id: int | str | None = None) -> Iterator[None]:
    """Bind a trace id and/or a request id for the duration of a block of work."""
    tokens = []
    if trace_id is not None:
        tokens.append((trace_id_var, trace_id_var.set(trace_id)))
    if request_id is not None:
        tokens.append((request_id_var, request_id_var.set(str(request_id))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
