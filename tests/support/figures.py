"""Figure lines (throughput, chaos results) shown at the end of every run.

Tests call the `figures` fixture instead of print(), so the numbers reach
the terminal summary even when pytest captures output.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

_LINES: list[str] = []


@pytest.fixture
def figures() -> Callable[[str], None]:
    return _LINES.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LINES:
        terminalreporter.section("figures")
        for line in _LINES:
            terminalreporter.write_line(line)
