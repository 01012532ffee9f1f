"""Named seams between two durable steps, where the crash tests kill a process.

In production nothing is installed and every call does nothing. The crash
tests install a hook (tests/support/crash_points.py) that ends the process
at the points they name, as a SIGKILL would.
"""

from __future__ import annotations

from collections.abc import Callable

POINTS = (
    "after_store_insert",
    "after_lock",
    "after_store_update",
    "before_publish",
    "after_publish",
    "after_ledger_resolve",
    "before_final_store_update",
    "before_offset_commit",
    # Between a status write (its event in the outbox) and the event's publish.
    "before_event_publish",
    # The batch path (app/services/submit.py).
    "after_batch_record",
    "after_batch_lock",
)

_hook: Callable[[str], None] | None = None


def install(hook: Callable[[str], None] | None) -> None:
    global _hook
    _hook = hook


def crash_point(name: str) -> None:
    if _hook is not None:
        _hook(name)
