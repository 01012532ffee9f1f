"""Trace ids, the log format, the scrubbing of secrets, bus messages' trace ids and timed backend calls."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from app.adapters.bus_messages import decode_request, decode_result, encode_request, encode_result
from app.adapters.instrumented import instrumented
from app.domain.transfer import Outcome
from app.logging_setup import make_formatter
from app.observability.context import (
    REDACTED,
    ContextFilter,
    current_trace_id,
    log_context,
    request_id_var,
    scrub,
    trace_id_from_header,
    valid_trace_id,
)
from app.ports.bus import EngineRequest, EngineResult
from app.ports.errors import DependencyUnavailable


@pytest.mark.parametrize("candidate", ["abc", "e2e-1.2:3_X", "a" * 64])
def test_safe_trace_ids_are_kept(candidate: str) -> None:
    assert valid_trace_id(candidate) == candidate
    assert trace_id_from_header(candidate) == candidate


@pytest.mark.parametrize("candidate", ["", "a" * 65, "has space", 'x"}{', "line\nbreak", "é", None, 42])
def test_unsafe_trace_ids_are_replaced_by_a_fresh_one(candidate: object) -> None:
    assert valid_trace_id(candidate) is None
    generated = trace_id_from_header(candidate if isinstance(candidate, str) else None)
    assert len(generated) == 32 and generated.isalnum()
    assert generated != trace_id_from_header(None)


def test_log_context_binds_and_restores() -> None:
    assert current_trace_id() is None
    with log_context(trace_id="outer", request_id=1):
        with log_context(request_id=2):
            assert (current_trace_id(), request_id_var.get()) == ("outer", "2")
        assert request_id_var.get() == "1"
    assert (current_trace_id(), request_id_var.get()) == (None, None)


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose lines go, formatted as configured, into a string."""
    monkeypatch.setenv("JWT_SECRET", "the-jwt-secret-" + "s" * 20)
    monkeypatch.setenv("CASSANDRA_PASSWORD", "cassandra-password-1")
    monkeypatch.setenv("STORE_URL", "cassandra://user:url-password-99@db:9042/ks")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter("worker"))
    handler.setFormatter(make_formatter())
    logger = logging.getLogger("test.observability")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_a_json_line_has_the_fields_and_the_bound_ids(emitted: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = emitted
    with log_context(trace_id="t-1", request_id=77):
        logger.info("transfer %s", "success", extra={"status": "success"})
    logger.warning("unbound")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "transfer success"
    assert (first["level"], first["logger"], first["process"]) == ("INFO", "test.observability", "worker")
    assert (first["trace_id"], first["request_id"], first["status"]) == ("t-1", "77", "success")
    assert first["timestamp"].endswith("+00:00")
    assert (second["trace_id"], second["request_id"], second["level"]) == (None, None, "WARNING")


def test_secrets_and_tokens_never_leave_in_a_line(emitted: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = emitted
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    logger.info("Authorization: Bearer %s", "opaque-token-123")
    logger.info("token %s", jwt)
    logger.info("secret the-jwt-secret-%s", "s" * 20)
    logger.info("connecting with cassandra-password-1 and url-password-99")
    try:
        raise RuntimeError(f"failed with {jwt}")
    except RuntimeError:
        logger.exception("boom")
    text = stream.getvalue()
    for secret in ("opaque-token-123", jwt, "the-jwt-secret-", "cassandra-password-1", "url-password-99"):
        assert secret not in text
    assert text.count(REDACTED) >= 6
    assert all(json.loads(line) for line in text.splitlines())


def test_scrub_leaves_ordinary_lines_alone() -> None:
    line = '{"message": "transfer success", "request_id": "119309185066598400"}'
    assert scrub(line, ["a-long-secret-value"]) == line


def test_log_format_text_gives_readable_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_FORMAT", "text")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    ContextFilter("web").filter(record)
    line = make_formatter().format(record)
    assert "INFO" in line and "hello world" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_bus_messages_carry_the_trace_id_only_when_there_is_one() -> None:
    request = EngineRequest(1, 2, "USDT", "funding", "spot", 5, trace_id="t-9")
    assert decode_request(encode_request(request)) == request
    bare = EngineRequest(1, 2, "USDT", "funding", "spot", 5)
    assert "trace_id" not in encode_request(bare)
    assert decode_request(encode_request(bare)).trace_id is None
    result = EngineResult(1, Outcome.CONFIRMED, None, trace_id="t-9")
    assert decode_result(encode_result(result)) == result
    # An unusable trace id is dropped, never a reason to dead-letter the message.
    unsafe = {**encode_result(result), "trace_id": "x" * 500}
    assert decode_result(unsafe).trace_id is None


class _Backend:
    name = "not a method"

    def answer(self, value: int) -> int:
        return value * 2

    def outage(self) -> None:
        raise DependencyUnavailable("ledger", "down")

    def bug(self) -> None:
        raise ValueError("bug")


def _count(operation: str, outcome: str) -> float:
    labels = {"backend": "unit-test", "operation": operation, "outcome": outcome}
    return REGISTRY.get_sample_value("internal_transfer_dependency_call_duration_seconds_count", labels) or 0.0


def test_instrumented_calls_are_timed_by_backend_operation_and_outcome() -> None:
    backend = instrumented(_Backend(), "unit-test")
    before = {
        (op, out): _count(op, out) for op in ("answer", "outage", "bug") for out in ("ok", "unavailable", "error")
    }
    assert backend.answer(21) == 42
    with pytest.raises(DependencyUnavailable):
        backend.outage()
    with pytest.raises(ValueError, match="bug"):
        backend.bug()
    assert backend.name == "not a method"
    assert _count("answer", "ok") == before[("answer", "ok")] + 1
    assert _count("outage", "unavailable") == before[("outage", "unavailable")] + 1
    assert _count("bug", "error") == before[("bug", "error")] + 1
    assert _count("answer", "error") == before[("answer", "error")]
