"""Every error code has one home (app/domain/errors.py) with its HTTP status, and docs/API.md lists it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from app.config import PROJECT_ROOT
from app.domain import errors
from app.domain.errors import DomainError, ValidationFailed, all_codes, declare_code, http_status_of

SOURCE_DIRS = ("app", "consumers", "scheduler")


def _codes_in_source() -> dict[str, str]:
    """Every string literal given as an error `code` anywhere in the service's source."""
    found: dict[str, str] = {}
    for directory in SOURCE_DIRS:
        for path in sorted((PROJECT_ROOT / directory).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                literal = None
                if isinstance(node, ast.keyword) and node.arg == "code":
                    literal = node.value
                elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "code" for t in node.targets
                ):
                    literal = node.value
                if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
                    found[literal.value] = f"{path.relative_to(PROJECT_ROOT)}:{getattr(node, 'lineno', 0)}"
    return found


def test_the_scan_sees_the_codes_it_must() -> None:
    # Guards the scan itself: if it found nothing, the next test would pass vacuously.
    found = _codes_in_source()
    assert {"INSUFFICIENT_BALANCE", "UNSUPPORTED_ASSET", "SAME_ACCOUNT", "INVALID_ACCOUNT_TYPE"} <= set(found)


def test_every_code_raised_anywhere_has_an_http_status() -> None:
    unmapped = {code: where for code, where in _codes_in_source().items() if http_status_of(code) is None}
    assert unmapped == {}


def test_every_error_class_declares_a_client_or_server_status() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, DomainError)]
    assert len(classes) > 10
    for cls in classes:
        assert 400 <= cls.http_status < 600, cls
        assert http_status_of(cls.code) == cls.http_status, cls


def test_a_code_cannot_be_declared_with_two_statuses() -> None:
    with pytest.raises(TypeError):
        declare_code("INSUFFICIENT_BALANCE", 400)


def test_a_per_instance_code_keeps_its_own_status() -> None:
    exc = ValidationFailed("x", code="INSUFFICIENT_BALANCE")
    assert exc.code == "INSUFFICIENT_BALANCE"
    assert http_status_of(exc.code) == 422


def test_docs_api_md_lists_every_code_with_its_status() -> None:
    text = (Path(PROJECT_ROOT) / "docs" / "API.md").read_text()
    table = text[text.index("## Errors") :]
    documented: dict[str, int] = {}
    for row in re.finditer(r"^\| (\d{3}) \| (.*) \|$", table, re.MULTILINE):
        for code in re.findall(r"`([A-Z_]+)`", row.group(2)):
            documented[code] = int(row.group(1))
    assert documented == all_codes()
