"""Slow clients against the service as deployed: nginx (ops/nginx/internal-transfer.conf) in front of gunicorn.

A client that sends its request a byte a second holds one of a gunicorn
gthread worker's 8 threads until it finishes, which it never does: 8 of them
stop gunicorn alone. nginx reads each request whole before gunicorn sees it,
so they cost nginx connections instead. Embedded backends, loopback.
`python -m tests.support.slow_clients [--proxy]` finds where each stalls.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.api.auth import issue_token
from tests.conftest import TEST_TOKEN_POLICY
from tests.support.slow_clients import STALL_SECONDS, Kind, SlowClients, probe, running_service

# 120 clients sending their requests slowly (60 the head, 60 the body), with
# 30 that connect and say nothing and 30 that never close after their answer.
KINDS: tuple[Kind, ...] = ("head", "body", "head", "body", "idle", "linger")
SLOW_CLIENTS = 180
# A request's head must have arrived this long after its connection opened (client_header_timeout),
# and its body may pause no longer (client_body_timeout): ops/nginx/internal-transfer.conf.
REQUEST_ARRIVAL_SECONDS = 10.0


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with running_service(tmp_path_factory.mktemp("slow-clients"), proxy=True) as (base_url, port, _):
        yield base_url, port


def test_180_slow_clients_do_not_slow_ordinary_requests(service: tuple[str, int]) -> None:
    base_url, port = service
    quiet = probe(base_url, 2)
    with SlowClients("127.0.0.1", port, SLOW_CLIENTS, KINDS) as attack:
        started = time.monotonic()
        attack.wait_connected()
        assert attack.connections >= SLOW_CLIENTS
        time.sleep(2)  # straight to gunicorn, every thread would be taken by now
        loaded = probe(base_url, 8)
        print(
            f"\nordinary requests, p99: {quiet.p99 * 1000:.1f} ms alone, {loaded.p99 * 1000:.1f} ms beside "
            f"{SLOW_CLIENTS} slow clients ({len(loaded.latencies)} requests, {loaded.failures} failed)"
        )
        assert loaded.p99 < STALL_SECONDS, "the slow clients stalled the service"
        assert loaded.failures == 0

        # Each slow head is dropped once its time is up, and its client has to start again.
        deadline = started + REQUEST_ARRIVAL_SECONDS + 5
        slow_requests: dict[Kind, int] = {k: KINDS.count(k) * SLOW_CLIENTS // len(KINDS) for k in ("head",)}
        while time.monotonic() < deadline and any(attack.dropped_by_kind[k] < n for k, n in slow_requests.items()):
            time.sleep(0.2)
        assert all(attack.dropped_by_kind[k] >= n for k, n in slow_requests.items()), attack.dropped_by_kind


def _exchange(port: int, *pieces: bytes, pause: float = 0.3) -> bytes:
    """Send `pieces` with a pause between them, then read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(pause)
            conn.sendall(piece)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


def _statuses(answer: bytes) -> list[int]:
    """The status of each answer: a pipelined answer's status line follows the last one's body directly."""
    return [int(status) for status in re.findall(rb"HTTP/1\.1 ([0-9]{3}) ", answer)]


def _body(answer: bytes) -> Any:
    return json.loads(answer.rpartition(b"\r\n\r\n")[2])


BALANCES = "GET /api/v1/user/balances HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
TRANSFER_HEAD = (
    "POST /api/v1/user/internal_transfer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
    "Content-Type: application/json\r\nIdempotency-Key: {key}\r\nConnection: close\r\n"
)
TRANSFER = b'{"from_account": {"account_type": "funding", "asset": "USDT"}, '
TRANSFER += b'"to_account": {"account_type": "spot", "asset": "USDT"}, "amount": "1"}'


def _token() -> str:
    return issue_token(TEST_TOKEN_POLICY, 3101)


def test_a_request_that_arrives_in_pieces_is_served(service: tuple[str, int]) -> None:
    request = BALANCES.format(token=_token()).encode()
    answer = _exchange(service[1], request[:10], request[10:60], request[60:])
    assert _statuses(answer) == [200]


def test_pipelined_requests_are_all_served(service: tuple[str, int]) -> None:
    request = BALANCES.format(token=_token()).encode()
    kept_alive = request.replace(b"Connection: close\r\n", b"")
    # The second request is split across the two sends.
    answer = _exchange(service[1], kept_alive + request[:30], request[30:])
    assert _statuses(answer) == [200, 200]


def test_a_body_sent_after_100_continue_is_read(service: tuple[str, int]) -> None:
    head = TRANSFER_HEAD.format(token=_token(), key="expect-1") + f"Content-Length: {len(TRANSFER)}\r\n"
    with socket.create_connection(("127.0.0.1", service[1]), timeout=10) as conn:
        conn.sendall(head.encode() + b"Expect: 100-continue\r\n\r\n")
        assert conn.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"  # before the body, which the client holds back
        conn.sendall(TRANSFER)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    # Only the one 100: then the transfer's answer (the user has no funds).
    assert _statuses(answer) == [422]
    assert _body(answer)["error"]["code"] == "INSUFFICIENT_BALANCE"


def test_a_chunked_body_is_read(service: tuple[str, int]) -> None:
    head = TRANSFER_HEAD.format(token=_token(), key="chunked-1") + "Transfer-Encoding: chunked\r\n\r\n"
    half = len(TRANSFER) // 2
    first = f"{half:x}\r\n".encode() + TRANSFER[:half] + b"\r\n"
    second = f"{len(TRANSFER) - half:x}\r\n".encode() + TRANSFER[half:] + b"\r\n0\r\n\r\n"
    answer = _exchange(service[1], head.encode() + first, second)
    assert _statuses(answer) == [422]
    assert _body(answer)["error"]["code"] == "INSUFFICIENT_BALANCE"


def test_an_endless_head_is_refused_not_held(service: tuple[str, int]) -> None:
    answer = _exchange(service[1], b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 70_000)
    assert _statuses(answer) == [431]
    assert _body(answer)["error"]["code"] == "HEADERS_TOO_LARGE"


def test_a_body_over_the_limit_is_413_without_waiting_for_the_rest(service: tuple[str, int]) -> None:
    # A chunked body declaring more than the 64 KiB limit: once the limit's worth has arrived it is refused.
    head = TRANSFER_HEAD.format(token=_token(), key="big-1").replace("Connection: close\r\n", "")
    with socket.create_connection(("127.0.0.1", service[1]), timeout=10) as conn:
        conn.sendall(head.encode() + b"Transfer-Encoding: chunked\r\n\r\n20000\r\n" + b" " * 70_000)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert _statuses(answer) == [413]
