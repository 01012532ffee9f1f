"""A cheap HTTP load generator: threads, each with one keep-alive http.client connection.

Every thread takes the next request from a shared list until none is left,
so `concurrency` requests are in flight at most. A connection the server
closed is reopened and the request sent once more (safe here: every POST
carries an Idempotency-Key); that is counted in `reconnects`.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.benchmarks.procstat import self_cpu_seconds
from tests.benchmarks.stats import percentile

_TIMEOUT_SECONDS = 60.0
# gunicorn closes a keep-alive connection idle for 2 s; like a client's pool,
# open a fresh one before that rather than meet a closed socket.
_IDLE_REOPEN_SECONDS = 1.5


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadResult:
    concurrency: int
    started_at: float = 0.0  # wall clock (time.time) when the first request could go out
    elapsed: float = 0.0  # seconds until the last answer arrived
    latencies: list[float] = field(default_factory=list)  # seconds, one per answered request
    statuses: Counter[int] = field(default_factory=Counter)
    bodies: list[bytes | None] = field(default_factory=list)  # by request index
    sent_at: list[float] = field(default_factory=list)  # wall clock, by request index
    errors: int = 0
    reconnects: int = 0
    cpu_seconds: float = 0.0  # this process's CPU while the load ran

    @property
    def count(self) -> int:
        return len(self.bodies)

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed > 0 else 0.0

    def latency_ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000


def _connection(host: str, port: int) -> http.client.HTTPConnection:
    connection = http.client.HTTPConnection(host, port, timeout=_TIMEOUT_SECONDS)
    connection.connect()
    return connection


def run_load(host: str, port: int, requests: list[Request], concurrency: int, rate: float | None = None) -> LoadResult:
    """Send every request, `concurrency` at a time, and wait for all answers.

    With `rate`, request i is due `i / rate` seconds after the start (an open
    loop): a thread waits for its request's due time, and the latency counts
    from that time, so a slow answer that delays the next send is not hidden.
    `concurrency` must then exceed what the rate keeps in flight.
    """
    result = LoadResult(concurrency=concurrency, bodies=[None] * len(requests), sent_at=[0.0] * len(requests))
    lock = threading.Lock()
    position = iter(range(len(requests)))
    gate = threading.Barrier(concurrency + 1)
    start_line: list[float] = []  # set by the main thread when the clock starts

    def take() -> int | None:
        with lock:
            return next(position, None)

    def client() -> None:
        try:
            connection = _connection(host, port)
        except OSError:
            gate.abort()  # the run cannot start: release everyone waiting (main raises)
            return
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        errors = reconnects = 0
        try:
            gate.wait()
        except threading.BrokenBarrierError:
            connection.close()
            return
        last_used = time.perf_counter()
        try:
            while (index := take()) is not None:
                request = requests[index]
                begun = time.perf_counter()
                if rate is not None:
                    begun = start_line[0] + index / rate
                    delay = begun - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                result.sent_at[index] = time.time()
                if time.perf_counter() - last_used > _IDLE_REOPEN_SECONDS:
                    connection.close()
                    connection = _connection(host, port)
                for attempt in (1, 2):
                    try:
                        connection.request(request.method, request.path, request.body, request.headers)
                        response = connection.getresponse()
                        body = response.read()
                    except (OSError, http.client.HTTPException):
                        connection.close()
                        if attempt == 2:
                            errors += 1
                            break
                        reconnects += 1
                        connection = _connection(host, port)
                        continue
                    last_used = time.perf_counter()
                    latencies.append(last_used - begun)
                    statuses[response.status] += 1
                    result.bodies[index] = body
                    break
        finally:
            connection.close()
            with lock:
                result.latencies.extend(latencies)
                result.statuses.update(statuses)
                result.errors += errors
                result.reconnects += reconnects

    threads = [threading.Thread(target=client, name=f"load-{n}", daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    cpu_before = self_cpu_seconds()
    start_line.append(time.perf_counter() + 0.01)  # before the gate opens: paced threads read it at once
    try:
        gate.wait()  # every connection is open: start the clock
    except threading.BrokenBarrierError:
        for thread in threads:
            thread.join()
        raise ConnectionError(f"could not open {concurrency} connections to {host}:{port}") from None
    result.started_at = time.time()
    begun = time.perf_counter()
    for thread in threads:
        thread.join()
    result.elapsed = time.perf_counter() - begun
    result.cpu_seconds = self_cpu_seconds() - cpu_before
    return result
