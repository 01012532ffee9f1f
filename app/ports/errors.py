"""Failures of infrastructure, as opposed to broken business rules."""

from __future__ import annotations


class DependencyUnavailable(Exception):
    """A backend could not be reached or did not answer in time.

    The operation may or may not have taken effect; callers rely on
    idempotent retries and the recovery scanner, never on this being final.
    """

    def __init__(self, backend: str, message: str = "", request_id: int | None = None) -> None:
        super().__init__(f"{backend} unavailable: {message}" if message else f"{backend} unavailable")
        self.backend = backend
        # Set when a transfer was already recorded: the client can follow it.
        self.request_id = request_id


class LedgerInvariantBroken(Exception):
    """The ledger answered something the account model says cannot happen."""
