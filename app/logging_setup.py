"""Process-wide logging: one JSON object per line, to stderr, from every process.

Fields: timestamp, level, logger, message, process (web, worker, engine),
and, when bound, `trace_id` (the HTTP X-Request-Id, carried on the bus) and
`request_id` (the transfer). `LOG_FORMAT=text` gives readable lines for
local work. python-json-logger does the JSON; we only add the context and
scrub anything that looks like a secret before a line leaves the process.
"""

from __future__ import annotations

import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

from app.config import Settings
from app.observability.context import request_id_var, trace_id_var

_CHATTY = ("tigerbeetle", "kafka", "cassandra")
# Bearer tokens, and anything shaped like a JWT (three base64url parts, the first `eyJ`).
_TOKEN_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
)
REDACTED = "[REDACTED]"


def _secret_values(settings: Settings) -> list[str]:
    """The configured secrets themselves, so a line that quotes one verbatim is scrubbed too."""
    # Short values would scrub ordinary words; real secrets are long.
    return sorted({v for v in settings.secret_values() if len(v) >= 8}, key=len, reverse=True)


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


def make_formatter(settings: Settings | None = None) -> logging.Formatter:
    # gunicorn's logconfig_dict (gunicorn.conf.py) calls this with no arguments:
    # the settings are then the environment's, as its app's will be.
    settings = settings or Settings()
    secrets = _secret_values(settings)
    if settings.log_as_text:
        return ScrubbingTextFormatter(secrets)
    return ScrubbingJsonFormatter(secrets)


def configure_logging(process: str, settings: Settings) -> None:
    """Send every logger's records, as JSON lines (or text), to stderr. Safe to call again."""
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    handler = next((h for h in root.handlers if getattr(h, "_internal_transfer", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._internal_transfer = True  # type: ignore[attr-defined]
        # Anything installed before (basicConfig, a test runner's) would print each line twice.
        for other in list(root.handlers):
            if type(other) is logging.StreamHandler:
                root.removeHandler(other)
        root.addHandler(handler)
    handler.filters = [ContextFilter(process)]
    handler.setFormatter(make_formatter(settings))
    # Python's warnings (a driver's deprecation notice) become records too, so they are JSON lines.
    logging.captureWarnings(True)
    # Client libraries narrate every connect at INFO; keep their warnings.
    for chatty in _CHATTY:
        logging.getLogger(chatty).setLevel(logging.WARNING)
