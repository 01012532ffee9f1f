"""Slow clients ("slowloris") against a running service, and the latency ordinary requests see meanwhile.

A slow client opens a connection and sends its request a byte a second,
never finishing it; when the server drops it, it connects again, so the
pressure stays at N connections. Three kinds:

- `head`: a request line and part of the headers, then a byte a second of a header that never ends;
- `body`: whole headers announcing a JSON body, then the body a byte a second;
- `idle`: connects and sends nothing;
- `linger`: sends a whole request with `Connection: close`, reads the answer, and never closes its end.

`python -m tests.support.slow_clients [--proxy]` starts the service under
gunicorn (its own gunicorn.conf.py, on loopback, embedded backends), with
`--proxy` behind ops/nginx/internal-transfer.conf, and steps N up until the
p99 of ordinary requests passes one second: the figures in docs/guarantees.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import requests

from app.api.auth import issue_token
from tests.conftest import TEST_JWT_SECRET, TEST_OPERATOR_JWT_SECRET, TEST_TOKEN_POLICY
from tests.support.nginx import nginx_in_front
from tests.support.processes import ServiceProcess, free_port, gunicorn, service_env, wait_until_ready

Kind = Literal["head", "body", "idle", "linger"]
KINDS: tuple[Kind, ...] = ("head", "body", "idle", "linger")

# The stall line: ordinary requests' p99 over this many seconds.
STALL_SECONDS = 1.0


def _opening(kind: Kind) -> bytes:
    if kind == "head":
        return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    if kind == "body":
        return (
            b"POST /api/v1/user/internal_transfer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{"
        )
    if kind == "linger":
        return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    return b""


@dataclass
class SlowClients:
    """N slow clients of the given kinds (taken in turn), on one asyncio loop in a thread of their own."""

    host: str
    port: int
    count: int
    kinds: Sequence[Kind] = KINDS
    interval: float = 1.0
    connections: int = 0  # connections opened so far, reconnections included
    dropped: int = 0  # connections the server closed
    dropped_by_kind: Counter[Kind] = field(default_factory=Counter)
    _open: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stopping: asyncio.Event | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    @property
    def open_now(self) -> int:
        return self._open

    def __enter__(self) -> SlowClients:
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("the slow clients did not start")
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(15)

    def wait_connected(self, timeout: float = 20) -> None:
        """Until all N have connected and sent their opening bytes."""
        deadline = time.monotonic() + timeout
        while self.connections < self.count and time.monotonic() < deadline:
            time.sleep(0.05)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        tasks = [asyncio.create_task(self._client(self.kinds[i % len(self.kinds)])) for i in range(self.count)]
        self._ready.set()
        await self._stopping.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _client(self, kind: Kind) -> None:
        assert self._stopping is not None
        while not self._stopping.is_set():
            writer = None
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                self.connections += 1
                writer.write(_opening(kind))
                await writer.drain()
                self._open += 1
                try:
                    while True:
                        # A byte a second, watching for the server closing the connection meanwhile.
                        with contextlib.suppress(TimeoutError):
                            if await asyncio.wait_for(reader.read(65536), self.interval) == b"":
                                break
                        if kind in ("head", "body"):
                            writer.write(b"a")
                            await writer.drain()
                finally:
                    self._open -= 1
                self.dropped += 1
                self.dropped_by_kind[kind] += 1
                if kind == "linger":
                    # The server has closed its end; this one stays open a while (waiting on it cost gunicorn its loop).
                    await asyncio.sleep(5 * self.interval)
            except (OSError, ConnectionError):
                self.dropped += 1
                self.dropped_by_kind[kind] += 1
                await asyncio.sleep(0.1)
            finally:
                if writer is not None:
                    writer.close()


def p99(latencies: Sequence[float]) -> float:
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Probe:
    """Ordinary requests' latencies over a window; a request that failed or timed out counts as its timeout."""

    latencies: tuple[float, ...]
    failures: int

    @property
    def p99(self) -> float:
        return p99(self.latencies)

    @property
    def median(self) -> float:
        return sorted(self.latencies)[len(self.latencies) // 2]


def probe(base_url: str, seconds: float, concurrency: int = 4, timeout: float = 5.0) -> Probe:
    """GET /healthz and an authenticated GET /api/v1/user/balances in turn, `concurrency` at once.

    Each request on a new connection, as a slow client's would be.
    """
    requests_: list[tuple[str, dict[str, str]]] = [(f"{base_url}/healthz", {})]
    requests_ += [
        (f"{base_url}/api/v1/user/balances", {"Authorization": f"Bearer {issue_token(TEST_TOKEN_POLICY, user_id)}"})
        for user_id in range(3001, 3001 + concurrency)
    ]
    deadline = time.monotonic() + seconds

    def one_lane(lane: int) -> tuple[list[float], int]:
        latencies: list[float] = []
        failures = 0
        i = lane
        while time.monotonic() < deadline:
            # Every other request is /healthz; the others are each lane's own user's balances.
            url, headers = requests_[0] if i % 2 else requests_[1 + lane]
            i += 1
            started = time.monotonic()
            try:
                ok = requests.get(url, headers=headers, timeout=timeout).status_code == 200
            except requests.RequestException:
                ok = False
            took = time.monotonic() - started
            if not ok:
                failures += 1
                took = max(took, timeout)
            latencies.append(took)
        return latencies, failures

    with ThreadPoolExecutor(concurrency) as pool:
        lanes = list(pool.map(one_lane, range(concurrency)))
    return Probe(tuple(t for lane, _ in lanes for t in lane), sum(f for _, f in lanes))


def under_attack(
    base_url: str, port: int, count: int, seconds: float, kinds: Sequence[Kind] = KINDS, settle: float = 2.0
) -> tuple[Probe, SlowClients]:
    """Ordinary requests' latencies while `count` slow clients hold their connections open."""
    with SlowClients("127.0.0.1", port, count, kinds) as attack:
        attack.wait_connected()
        # Long enough for each slow connection to reach a worker thread, as it does today.
        time.sleep(settle)
        measured = probe(base_url, seconds)
    return measured, attack


@contextlib.contextmanager
def running_service(
    log_dir: Path, config: Path | None = None, proxy: bool = False, **env: str
) -> Iterator[tuple[str, int, ServiceProcess]]:
    """The service under gunicorn (the repository's gunicorn.conf.py, or `config`) on loopback; stopped by its pid.

    With `proxy`, the URL and port are those of nginx in front (ops/nginx/internal-transfer.conf).
    """
    # Ordinary requests come fast, from few users: rate limits have tests of their own.
    env = {"TRANSFER_RATE_LIMIT": "1000000 per second", "READ_RATE_LIMIT": "1000000 per second", **env}
    port = free_port()
    process = gunicorn(
        port,
        service_env(log_dir, JWT_SECRET=TEST_JWT_SECRET, OPERATOR_JWT_SECRET=TEST_OPERATOR_JWT_SECRET, **env),
        log_dir,
    )
    if config is not None:
        process.argv[process.argv.index("gunicorn.conf.py")] = str(config.resolve())
    process.start()
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process)
        if not proxy:
            yield f"http://127.0.0.1:{port}", port, process
            return
        with nginx_in_front(port, log_dir / "nginx") as front:
            yield f"http://127.0.0.1:{front}", front, process
    finally:
        process.stop()


def stall_threshold(
    counts: Sequence[int],
    seconds: float,
    kinds: Sequence[Kind],
    config: Path | None = None,
    report: Callable[[str], None] = print,
    proxy: bool = False,
) -> int | None:
    """The first N of `counts` at which the p99 passes STALL_SECONDS (a fresh service for each), or None."""
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="slow-clients-") as directory:
            with running_service(Path(directory), config, proxy) as (base_url, port, _):
                measured, attack = under_attack(base_url, port, count, seconds, kinds)
        report(
            f"{count:5d} slow clients ({'+'.join(kinds)}): p99 {measured.p99 * 1000:8.1f} ms, "
            f"median {measured.median * 1000:7.1f} ms, {len(measured.latencies)} requests, "
            f"{measured.failures} failed; {attack.connections} slow connections opened, {attack.dropped} dropped"
        )
        if measured.p99 > STALL_SECONDS:
            return count
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="5,10,20,40,80,120,160,240,320", help="slow-client counts to step through")
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="how long ordinary requests are measured at each step"
    )
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"slow-client kinds, taken in turn: {', '.join(KINDS)}"
    )
    parser.add_argument(
        "--config", type=Path, help="another gunicorn config (say, an older gunicorn.conf.py, from git show)"
    )
    parser.add_argument("--proxy", action="store_true", help="behind ops/nginx/internal-transfer.conf")
    args = parser.parse_args(argv)
    kinds = [k for k in KINDS if k in args.kinds.split(",")]
    counts = [int(n) for n in args.counts.split(",")]
    found = stall_threshold(counts, args.seconds, kinds, args.config, proxy=args.proxy)
    print(f"stalls at {found} slow clients" if found else "no stall at any count tried")
    return 0


if __name__ == "__main__":
    sys.exit(main())
