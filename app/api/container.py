"""Access to the composition root from a request."""

from __future__ import annotations

from flask import current_app

from app.bootstrap import Container


def container() -> Container:
    found: Container = current_app.extensions["internal_transfer"]
    return found
