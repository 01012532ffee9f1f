"""Every error code has one home: its class (app/domain/errors.py, or app/api/errors.py for HTTP's own);
its status has one home, the HTTP edge (app/api/errors.py); docs/API.md lists both; one renderer writes
every error body."""

from __future__ import annotations

import ast
import gc
import json
import re
from pathlib import Path

import pytest

from app.api import errors as api_errors
from app.api.errors import STATUS, all_codes, declared_codes, render, status_of, status_of_code
from app.api.gunicorn_errors import json_error_response
from app.config import PROJECT_ROOT
from app.domain import errors
from app.domain.errors import Conflict, DomainError, InsufficientBalance, Refused, ValidationFailed

SOURCE_DIRS = ("app", "consumers", "scheduler")


def _sources() -> list[Path]:
    return [path for directory in SOURCE_DIRS for path in sorted((PROJECT_ROOT / directory).rglob("*.py"))]


def _codes_in_source() -> dict[str, str]:
    """Every string literal given as an error `code` anywhere in the service's source."""
    found: dict[str, str] = {}
    for path in _sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            literal = None
            if isinstance(node, ast.keyword) and node.arg == "code":
                literal = node.value
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "code" for t in node.targets):
                literal = node.value
            if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
                found[literal.value] = f"{path.relative_to(PROJECT_ROOT)}:{getattr(node, 'lineno', 0)}"
    return found


def _error_classes() -> list[type[DomainError]]:
    return [
        c
        for module in (errors, api_errors)
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, DomainError) and c is not DomainError
    ]


def test_the_scan_sees_the_codes_it_must() -> None:
    # Guards the scan itself: if it found nothing, the next test would pass vacuously.
    found = _codes_in_source()
    assert {"INSUFFICIENT_BALANCE", "UNSUPPORTED_ASSET", "SAME_ACCOUNT", "INVALID_ACCOUNT_TYPE", "RATE_LIMITED"} <= set(
        found
    )


def test_every_code_raised_anywhere_has_an_http_status() -> None:
    unmapped = {code: where for code, where in _codes_in_source().items() if status_of_code(code) is None}
    assert unmapped == {}


def test_every_error_class_answers_a_client_or_server_status() -> None:
    classes = _error_classes()
    assert len(classes) > 20
    for cls in classes:
        status = status_of(cls)
        assert status is not None and 400 <= status < 600, cls
        if "code" in vars(cls):
            assert status_of_code(cls.code) == status, cls


def test_the_domain_knows_nothing_of_http() -> None:
    # No status on a domain class, and nothing of the web imported by the domain.
    for cls in [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, DomainError)]:
        assert not any(isinstance(v, int) and 100 <= v < 600 for v in vars(cls).values()), cls
        assert not {"http_status", "status"} & set(dir(cls)), cls
    for path in sorted((PROJECT_ROOT / "app" / "domain").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in {"flask", "werkzeug", "http", "gunicorn"}, (path, name)
                assert not name.startswith("app.api"), (path, name)


def test_kinds_map_their_codes_and_a_code_cannot_have_two_statuses() -> None:
    assert status_of(InsufficientBalance) == STATUS[Refused] == 422
    assert "INSUFFICIENT_BALANCE" in all_codes()
    # A kind has no code of its own: Conflict's inherited INVALID_REQUEST is not a 409.
    assert status_of(Conflict) == 409 and all_codes()["INVALID_REQUEST"] == 400

    class Clash(Conflict):  # declares a 400 code as a 409: a bug, found at once
        code = "INVALID_AMOUNT"

    try:
        with pytest.raises(TypeError):
            declared_codes([errors.InvalidAmount, Clash])
    finally:  # no other test may meet this class among Conflict's subclasses
        del Clash
        gc.collect()
    assert "Clash" not in {c.__name__ for c in Conflict.__subclasses__()}


def test_a_per_instance_code_keeps_its_own_status() -> None:
    exc = ValidationFailed("x", code="INSUFFICIENT_BALANCE")
    assert exc.code == "INSUFFICIENT_BALANCE"
    assert render(exc).status == 422


def test_an_undeclared_code_is_a_500_not_a_guess() -> None:
    answer = render(ValidationFailed("x", code="NO_SUCH_CODE"))
    assert answer.status == 500
    assert json.loads(answer.body)["error"]["code"] == "INTERNAL_ERROR"


def test_the_renderer_writes_the_one_shape_with_its_headers() -> None:
    unauthenticated = render(errors.Unauthenticated("who?"))
    assert (unauthenticated.status, unauthenticated.headers["WWW-Authenticate"]) == (401, "Bearer")
    unavailable = render(api_errors.ServiceUnavailable("later", backend="store"))
    assert unavailable.status == 503 and unavailable.headers["Retry-After"]
    assert json.loads(unavailable.body) == {
        "error": {"code": "DEPENDENCY_UNAVAILABLE", "message": "later", "details": {"backend": "store"}}
    }


def test_gunicorn_s_refusals_go_through_the_same_renderer() -> None:
    raw = json_error_response(b"HTTP/1.1 414 Request-URI Too Long\r\nContent-Type: text/html\r\n\r\n<html>x</html>")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 Request-URI Too Long\r\n")
    assert body == render(api_errors.UriTooLong("the request line is too long")).body
    assert b"Content-Length: %d" % len(body) in head


def test_only_the_renderer_writes_an_error_body() -> None:
    # An {"error": {"code": ..., "message": ...}} literal anywhere but app/api/errors.py is a second renderer.
    def keys(node: ast.Dict) -> set[object]:
        return {k.value for k in node.keys if isinstance(k, ast.Constant)}

    writers = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Dict):
                continue
            for key, value in zip(node.keys, node.values, strict=True):
                is_error = isinstance(key, ast.Constant) and key.value == "error"
                if is_error and isinstance(value, ast.Dict) and {"code", "message"} <= keys(value):
                    writers.append(str(path.relative_to(PROJECT_ROOT)))
    assert writers == ["app/api/errors.py"]


def test_docs_api_md_lists_every_code_with_its_status() -> None:
    text = (Path(PROJECT_ROOT) / "docs" / "API.md").read_text()
    table = text[text.index("## Errors") :]
    documented: dict[str, int] = {}
    for row in re.finditer(r"^\| (\d{3}) \| (.*) \|$", table, re.MULTILINE):
        for code in re.findall(r"`([A-Z_]+)`", row.group(2)):
            documented[code] = int(row.group(1))
    assert documented == all_codes()
