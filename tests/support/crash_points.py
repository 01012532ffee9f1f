"""Arms the service's crash points: the process that reaches one dies at once."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from app.services import crash_points

log = logging.getLogger(__name__)

# A directory whose sitecustomize arms CRASH_POINTS in every Python process
# that has it on its PYTHONPATH: how a test reaches gunicorn's workers.
HOOK_DIR = Path(__file__).parent / "crash_hook"


def arm(names: Iterable[str]) -> None:
    armed = frozenset(names)
    unknown = armed - set(crash_points.POINTS)
    if unknown:
        raise ValueError(f"unknown crash points: {sorted(unknown)}")

    def die_at(name: str) -> None:
        if name in armed:
            log.critical("crash point %s reached: exiting", name)
            # No cleanup, no finally blocks, nothing flushed: as under SIGKILL.
            os._exit(137)

    crash_points.install(die_at)


def with_hook(env: dict[str, str]) -> dict[str, str]:
    """The environment, with the hook on PYTHONPATH when it names crash points."""
    if not env.get("CRASH_POINTS"):
        return env
    paths = [str(HOOK_DIR), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    return {**env, "PYTHONPATH": os.pathsep.join(paths)}
