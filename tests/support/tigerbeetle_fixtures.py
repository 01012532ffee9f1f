"""Pytest plugin: a real TigerBeetle server for the tests that need one.

Tests that need it are skipped, with a reason, when no server binary is
found (set TIGERBEETLE_BIN or put `tigerbeetle` on PATH); with
REQUIRE_TIGERBEETLE=1 they fail instead. They carry the `tigerbeetle` marker,
so `-m "not tigerbeetle"` leaves them out. The run ends with one line saying
whether they ran.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from app.adapters.tigerbeetle_ledger import TigerBeetleLedger
from tests.support.tigerbeetle_server import TigerBeetleServer, binary_version, find_tigerbeetle_binary

NOT_FOUND = "TigerBeetle server binary not found (set TIGERBEETLE_BIN or put tigerbeetle on PATH)"
SKIPPED = ": real-ledger tests skipped"
_FIXTURES = frozenset({"tigerbeetle_binary", "tigerbeetle_server", "tigerbeetle_ledger"})
_PARAMETER = "tigerbeetle"


def require_tigerbeetle() -> bool:
    return os.environ.get("REQUIRE_TIGERBEETLE") == "1"


def missing_reason() -> str | None:
    """Why the real-ledger tests cannot run here, or None when they can."""
    if find_tigerbeetle_binary() is not None:
        return None
    configured = os.environ.get("TIGERBEETLE_BIN", "").strip()
    if configured:
        return f"TIGERBEETLE_BIN={configured} is not an executable file"
    return NOT_FOUND


@dataclass
class _Record:
    tracked: set[str] = field(default_factory=set)
    outcomes: dict[str, str] = field(default_factory=dict)
    binary: str | None = None
    version: str = ""


_record = _Record()


def _needs_tigerbeetle(item: pytest.Item) -> bool:
    if _FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and _PARAMETER in callspec.params.values()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _needs_tigerbeetle(item):
            item.add_marker(pytest.mark.tigerbeetle)


def pytest_collection_finish(session: pytest.Session) -> None:
    _record.tracked = {item.nodeid for item in session.items if _needs_tigerbeetle(item)}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid not in _record.tracked:
        return
    if report.failed:
        _record.outcomes[report.nodeid] = "failed"
    elif report.skipped and report.nodeid not in _record.outcomes:
        _record.outcomes[report.nodeid] = "skipped"
    elif report.when == "call" and report.passed:
        _record.outcomes[report.nodeid] = "passed"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    outcomes = list(_record.outcomes.values())
    passed, failed, skipped = (outcomes.count(kind) for kind in ("passed", "failed", "skipped"))
    reason = missing_reason()
    if not _record.tracked:
        line = "TigerBeetle: no real-ledger tests selected"
    elif reason is not None:
        if require_tigerbeetle():
            line = f"TigerBeetle: REQUIRE_TIGERBEETLE=1 but {reason}: {len(_record.tracked)} real-ledger tests errored"
        else:
            line = f"TigerBeetle: {reason}{SKIPPED} ({len(_record.tracked)} tests)"
    else:
        where = f"{_record.binary} ({_record.version})" if _record.binary else "a TigerBeetle server"
        line = f"TigerBeetle: real-ledger tests ran against {where}: {passed} passed, {failed} failed"
        if skipped:
            line += f", {skipped} skipped"
    terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def tigerbeetle_binary() -> str:
    """The server binary; skips (or fails, under REQUIRE_TIGERBEETLE=1) when there is none."""
    reason = missing_reason()
    if reason is not None:
        if require_tigerbeetle():
            pytest.fail(f"REQUIRE_TIGERBEETLE=1 but {reason}", pytrace=False)
        pytest.skip(reason + SKIPPED)
    binary = find_tigerbeetle_binary()
    assert binary is not None
    if _record.binary is None:
        _record.binary, _record.version = binary, binary_version(binary)
    return binary


@pytest.fixture(scope="session")
def tigerbeetle_server(
    tigerbeetle_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TigerBeetleServer]:
    """One server for the whole session; tests keep apart by using fresh random ids."""
    server = TigerBeetleServer(tigerbeetle_binary, tmp_path_factory.mktemp("tigerbeetle"))
    server.start()
    try:
        yield server
    finally:
        server.remove_data()


@pytest.fixture
def tigerbeetle_ledger(tigerbeetle_server: TigerBeetleServer) -> Iterator[TigerBeetleLedger]:
    ledger = TigerBeetleLedger.from_url(f"{tigerbeetle_server.url}&timeout_seconds=10")
    try:
        yield ledger
    finally:
        ledger.close()
