"""The log context (the HTTP trace id and the transfer's request id, per thread of work) and the lines that carry it.

Context variables, so each gunicorn thread (and each consumer thread)
carries its own; the log filter copies them onto every record, and the
formatters scrub anything that looks like a secret before a line leaves the
process. Setting logging up from the settings is app/logging_setup.py.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

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


# Bearer tokens, and anything shaped like a JWT (three base64url parts, the first `eyJ`).
_TOKEN_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
)
REDACTED = "[REDACTED]"


def scrub(line: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in line:
            line = line.replace(secret, REDACTED)
    for pattern in _TOKEN_PATTERNS:
        line = pattern.sub(lambda m: (m.group(1) if m.re.groups else "") + REDACTED, line)
    return line


class ContextFilter(logging.Filter):
    """Copies the bound trace and request ids onto each record (an explicit `extra` wins)."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace_id", None) is None:
            record.trace_id = trace_id_var.get()
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        record.process_name = self.process
        return True


class ScrubbingJsonFormatter(JsonFormatter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s %(process_name)s %(trace_id)s %(request_id)s",
            rename_fields={"levelname": "level", "name": "logger", "process_name": "process"},
            timestamp=True,
        )
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record), self.secrets)


class ScrubbingTextFormatter(logging.Formatter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(process)d %(name)s [%(trace_id)s %(request_id)s] %(message)s")
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record), self.secrets)
