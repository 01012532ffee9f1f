"""gunicorn's own error answers (a bad request line, an over-long URI...) in the service's JSON shape.

gunicorn answers these itself, before the application sees a request, with an
HTML page from `gunicorn.util.write_error`, and has no setting to change it.
The worker below keeps gunicorn's decisions (which status, what to log, the
access-log line) by calling its `handle_error`, and only re-renders the bytes
it sends: the status line is kept, the HTML body becomes the one error shape.
The message is ours, never gunicorn's, which quotes the client's raw input.
"""

from __future__ import annotations

import re
import socket
from http import HTTPStatus
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from app.api.errors import (
    ExpectationFailed,
    HeadersTooLarge,
    InternalError,
    TransferCodingNotImplemented,
    UriTooLong,
    render,
)
from app.domain.errors import DomainError, PermissionDenied, ValidationFailed

# gunicorn's status -> the error it means, with our message (never gunicorn's, which quotes the input).
_BY_STATUS: dict[int, tuple[type[DomainError], str]] = {
    400: (ValidationFailed, "the request is not valid HTTP"),
    403: (PermissionDenied, "the request is forbidden"),
    414: (UriTooLong, "the request line is too long"),
    417: (ExpectationFailed, "only Expect: 100-continue is supported"),
    431: (HeadersTooLarge, "the request headers are too large"),
    500: (InternalError, "an internal error occurred"),
    501: (TransferCodingNotImplemented, "only chunked Transfer-Encoding is supported"),
}

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3}) ")


def json_error_response(raw: bytes) -> bytes:
    """gunicorn's HTML error response, rewritten as the same error, rendered like every other."""
    found = _STATUS_LINE.match(raw)
    status = int(found.group(1)) if found else 500
    cls, message = _BY_STATUS.get(status) or (_BY_STATUS[400] if 400 <= status < 500 else _BY_STATUS[500])
    answer = render(cls(message))
    headers = {**answer.headers, "Connection": "close", "Content-Length": str(len(answer.body))}
    head = f"HTTP/1.1 {answer.status} {HTTPStatus(answer.status).phrase}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return (head + "\r\n").encode("latin-1") + answer.body


class _RewritingSocket:
    """The client socket, except that what gunicorn's write_error sends is rewritten first."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(json_error_response(bytes(data)))

    def send(self, data: bytes) -> int:
        # write_error ends in sendall; a partial send must never split the rewrite.
        self.sendall(data)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class JsonErrorThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, answering its own errors as JSON."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        super().handle_error(req, _RewritingSocket(client), addr, exc)
