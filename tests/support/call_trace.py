"""Which of the project's files one call enters, traced with sys.setprofile.

The figure measures how many places a change to one path may have to touch:
docs/architecture.md gives it for a POST and for settlement.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from app.config import PROJECT_ROOT

# The service's own code: what a reader of the path has to open.
_PROJECT_PARTS = ("app", "consumers", "scheduler")


def _project_file(filename: str) -> str | None:
    try:
        relative = Path(filename).resolve().relative_to(PROJECT_ROOT)
    except ValueError:
        return None
    if relative.parts[0] in _PROJECT_PARTS or relative.parts == ("wsgi.py",):
        return relative.as_posix()
    return None


@contextmanager
def project_files_entered() -> Iterator[set[str]]:
    """Collect, into the yielded set, every project file a Python function is called in, on any thread."""
    entered: set[str] = set()
    seen: dict[str, str | None] = {}

    def profile(frame: FrameType, event: str, _: Any) -> None:
        if event != "call":
            return
        filename = frame.f_code.co_filename
        if filename not in seen:
            seen[filename] = _project_file(filename)
        relative = seen[filename]
        if relative is not None:
            entered.add(relative)

    previous: Callable[..., Any] | None = sys.getprofile()
    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        yield entered
    finally:
        sys.setprofile(previous)
        threading.setprofile(None)
