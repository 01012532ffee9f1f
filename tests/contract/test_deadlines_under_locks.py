"""Every caller's deadline holds even when the first connection is made during an outage.

No test here needs a real backend: a resolver that stalls, and a listener on
127.0.0.1 that accepts connections and never answers, stand in for the outage.
"""

from __future__ import annotations

import socket
import threading
import time
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.adapters import tigerbeetle_ledger
from app.adapters.cassandra_session import CassandraSession
from app.adapters.tigerbeetle_ledger import TigerBeetleLedger
from app.ports.errors import DependencyUnavailable

DEADLINE = 1.0
SLACK = 1.0  # thread hand-offs; far below the stall each test sets up
STALL = 12.0


def seconds_to_fail(call: Callable[[], object]) -> float:
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable):
        call()
    return time.monotonic() - started


def test_a_stalled_dns_lookup_holds_no_caller_past_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    lookups: list[str] = []

    def stalled_getaddrinfo(host: str, *_: object) -> object:
        lookups.append(host)
        release.wait(STALL)
        raise OSError("the resolver gave up")

    # Only the adapter's view of the socket module: nothing else in the process is touched.
    fake = types.SimpleNamespace(
        getaddrinfo=stalled_getaddrinfo, AF_INET=socket.AF_INET, SOCK_STREAM=socket.SOCK_STREAM
    )
    monkeypatch.setattr(tigerbeetle_ledger, "socket", fake)
    ledger = TigerBeetleLedger(["tigerbeetle.invalid:3000"], timeout_seconds=DEADLINE)
    try:
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(seconds_to_fail, ledger.ping)
            while not lookups:
                time.sleep(0.01)  # the first caller's client is being built: the resolver is stalled
            later = [pool.submit(seconds_to_fail, ledger.ping) for _ in range(3)]
            elapsed = [first.result(), *(f.result() for f in later)]
        assert all(e < DEADLINE + SLACK for e in elapsed), elapsed
        assert len(elapsed) == 4
        assert not release.is_set()  # all of it happened while the resolver was still stalled
    finally:
        release.set()
        ledger.close()


@pytest.fixture
def silent_node() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that accepts every connection and never sends a byte."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


def test_concurrent_first_connections_to_a_silent_node_each_keep_their_deadline(silent_node: int) -> None:
    session = CassandraSession(["127.0.0.1"], silent_node, "unused", timeout_seconds=DEADLINE)
    callers = 6
    start = threading.Barrier(callers)

    def call() -> float:
        start.wait()
        return seconds_to_fail(lambda: session.run("SELECT release_version FROM system.local"))

    try:
        with ThreadPoolExecutor(callers) as pool:
            elapsed = list(pool.map(lambda _: call(), range(callers)))
        # Each in turn under a lock, the sixth would have waited about six deadlines.
        assert len(elapsed) == callers and max(elapsed) < DEADLINE + SLACK, elapsed
        # And a later caller, once that attempt failed, is bounded the same way.
        assert seconds_to_fail(session.connect) < DEADLINE + SLACK
    finally:
        session.close()
