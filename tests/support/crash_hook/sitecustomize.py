"""Loaded at start by every Python process with this directory on PYTHONPATH (tests only)."""

import os
import sys
from pathlib import Path

if os.environ.get("CRASH_POINTS"):
    # gunicorn's sys.path starts at its script's directory, not the project.
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from tests.support.crash_points import arm

    arm(filter(None, os.environ["CRASH_POINTS"].split(",")))
