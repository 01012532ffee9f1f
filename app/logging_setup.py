"""Process-wide logging: one line per record, to stderr."""

from __future__ import annotations

import logging
import os


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(process)d %(name)s %(message)s",
    )
    # Client libraries narrate every connect at INFO; keep their warnings.
    for chatty in ("tigerbeetle", "kafka", "cassandra"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
