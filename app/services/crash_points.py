"""Named crash points for the crash-safety tests.

Off unless `CRASH_POINTS` names them (comma-separated). When one fires the
process dies at once with `os._exit`, as a SIGKILL would leave it: no
cleanup, no finally blocks, nothing flushed.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

POINTS = (
    "after_store_insert",
    "after_lock",
    "after_store_update",
    "before_publish",
    "after_publish",
    "after_ledger_resolve",
    "before_final_store_update",
    "before_offset_commit",
)

_armed = frozenset(filter(None, os.environ.get("CRASH_POINTS", "").split(",")))


def crash_point(name: str) -> None:
    if name in _armed:
        log.critical("crash point %s reached: exiting", name)
        os._exit(137)
