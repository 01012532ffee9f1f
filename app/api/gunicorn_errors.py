"""gunicorn's own error answers (a bad request line, an over-long URI...) in the service's JSON shape.

gunicorn answers these itself, before the application sees a request, with an
HTML page from `gunicorn.util.write_error`, and has no setting to change it.
The worker below keeps gunicorn's decisions (which status, what to log, the
access-log line) by calling its `handle_error`, and only re-renders the bytes
it sends: the status line is kept, the HTML body becomes the one error shape.
The message is ours, never gunicorn's, which quotes the client's raw input.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from app.domain.errors import (
    DomainError,
    ExpectationFailed,
    HeadersTooLarge,
    InternalError,
    PermissionDenied,
    TransferCodingNotImplemented,
    UriTooLong,
    ValidationFailed,
)

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
    """gunicorn's HTML error response, rewritten with the same status and a JSON body."""
    found = _STATUS_LINE.match(raw)
    status = int(found.group(1)) if found else 500
    cls, message = _BY_STATUS.get(status) or (_BY_STATUS[400] if 400 <= status < 500 else _BY_STATUS[500])
    body = json.dumps({"error": {"code": cls.code, "message": message, "details": {}}}).encode()
    head = (
        f"HTTP/1.1 {cls.http_status} {cls.code.replace('_', ' ').title()}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


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
