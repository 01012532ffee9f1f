"""Process-wide logging: one JSON object per line, to stderr, from every process.

Fields: timestamp, level, logger, message, process (web, worker, engine),
and, when bound, `trace_id` (the HTTP X-Request-Id, carried on the bus) and
`request_id` (the transfer). `LOG_FORMAT=text` gives readable lines for
local work. python-json-logger does the JSON; we only add the context and
scrub anything that looks like a secret before a line leaves the process.
"""

from __future__ import annotations

import logging
import sys

from app.config import Settings
from app.observability.context import ContextFilter, ScrubbingJsonFormatter, ScrubbingTextFormatter

_CHATTY = ("tigerbeetle", "kafka", "cassandra")


def _secret_values(settings: Settings) -> list[str]:
    """The configured secrets themselves, so a line that quotes one verbatim is scrubbed too."""
    # Short values would scrub ordinary words; real secrets are long.
    return sorted({v for v in settings.secret_values() if len(v) >= 8}, key=len, reverse=True)


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
