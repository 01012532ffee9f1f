from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.config import (
    DEV_JWT_SECRET,
    EventsTailSettings,
    GunicornSettings,
    ReferenceEngineSettings,
    Settings,
    claim_metrics_dir,
)


def test_embedded_mode_falls_back_to_the_dev_secret_loudly(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(store_url="sqlite:///x", ledger_url="embedded:///y", bus_url="inprocess://", jwt_secret="")
    assert settings.effective_jwt_secret() == DEV_JWT_SECRET
    assert "JWT_SECRET is not set" in caplog.text


def test_real_backends_refuse_to_run_without_a_secret() -> None:
    settings = Settings(
        store_url="cassandra://db/ks", ledger_url="embedded:///y", bus_url="inprocess://", jwt_secret=""
    )
    with pytest.raises(RuntimeError, match="JWT_SECRET must be set"):
        settings.effective_jwt_secret()


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(RuntimeError, match="at least 32"):
        Settings(jwt_secret="short").effective_jwt_secret()


# -- one configuration: every variable lands, typed, in app/config.py ---------------


def test_the_worker_s_and_the_logs_variables_are_typed_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "RECONCILE_INTERVAL_SECONDS": "2.5",
        "RECONCILE_WINDOW_SECONDS": "60",
        "RECONCILE_GRACE_SECONDS": "1",
        "RECONCILE_LIMIT": "7",
        "HEALTH_INTERVAL_SECONDS": "0.5",
        "LOG_FORMAT": " Text ",
        "LOG_LEVEL": "debug",
        "METRICS_PORT": "9101",
        "METRICS_ADDR": "127.0.0.2",
        "METRICS_ON_WEB": "0",
        "PROMETHEUS_MULTIPROC_DIR": "/tmp/metrics",
        "CASSANDRA_REPLICATION": "{'class': 'NetworkTopologyStrategy', 'dc1': 3}",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.reconcile_interval_seconds, settings.reconcile_window_seconds) == (2.5, 60.0)
    assert (settings.reconcile_grace_seconds, settings.reconcile_limit, settings.health_interval_seconds) == (1, 7, 0.5)
    assert settings.log_as_text and settings.log_level == "DEBUG"
    assert (settings.metrics_port, settings.metrics_addr, settings.metrics_on_web) == (9101, "127.0.0.2", False)
    assert settings.prometheus_multiproc_dir == "/tmp/metrics"
    assert settings.cassandra_replication == "{'class': 'NetworkTopologyStrategy', 'dc1': 3}"


def test_the_defaults_of_the_moved_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RECONCILE_INTERVAL_SECONDS", "HEALTH_INTERVAL_SECONDS", "LOG_FORMAT", "LOG_LEVEL", "METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name in ("METRICS_ADDR", "METRICS_ON_WEB", "PROMETHEUS_MULTIPROC_DIR", "CASSANDRA_REPLICATION"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.reconcile_interval_seconds, settings.health_interval_seconds) == (300, 10)
    assert (settings.log_as_text, settings.log_level) == (False, "INFO")
    assert (settings.metrics_port, settings.metrics_addr, settings.metrics_on_web) == (None, "127.0.0.1", False)
    assert settings.prometheus_multiproc_dir is None and settings.cassandra_replication is None


def test_cassandra_credentials_come_from_their_two_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASSANDRA_USERNAME", "svc")
    monkeypatch.setenv("CASSANDRA_PASSWORD", " spaced password ")
    assert Settings().cassandra_credentials() == ("svc", " spaced password ")
    monkeypatch.delenv("CASSANDRA_USERNAME")
    assert Settings().cassandra_credentials() is None


def test_settings_never_show_a_secret() -> None:
    settings = Settings(
        jwt_secret="user-key-" + "u" * 30,
        operator_jwt_secret="operator-key-" + "o" * 30,
        cassandra_password="cassandra-pass-1",
        store_url="cassandra://svc:url-pass-2@db:9042/ks",
        bus_url="kafka://broker:9092",
        ratelimit_storage_uri="redis://:redis-pass-3@cache:6379",
    )
    shown = repr(settings)
    for secret in ("u" * 30, "o" * 30, "cassandra-pass-1", "url-pass-2", "redis-pass-3"):
        assert secret not in shown
    assert "cassandra://svc:***@db:9042/ks" in shown and "kafka://broker:9092" in shown
    assert set(settings.secret_values()) >= {"cassandra-pass-1", "url-pass-2", "redis-pass-3"}


def test_a_percent_encoded_url_password_is_scrubbed_as_written_and_as_meant() -> None:
    settings = Settings(store_url="cassandra://svc:p%40ss-word-9@db/ks")
    assert {"p%40ss-word-9", "p@ss-word-9"} <= set(settings.secret_values())


def test_the_reference_engine_is_no_part_of_the_production_settings_or_container(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dataclasses import fields

    from app.bootstrap import Container

    assert not [f.name for f in fields(Settings) if "engine" in f.name]
    assert not [f.name for f in fields(Container) if "engine" in f.name]
    monkeypatch.setenv("REFERENCE_ENGINE_REJECT_SUFFIX", "13")
    monkeypatch.setenv("REFERENCE_ENGINE_DB", "/tmp/engine.db")
    monkeypatch.setenv("ENGINE_METRICS_PORT", "9102")
    assert ReferenceEngineSettings() == ReferenceEngineSettings("13", "/tmp/engine.db", 9102)


def test_gunicorn_s_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BIND", "GUNICORN_THREADS", "WEB_CONCURRENCY", "WEB_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORT", "8123")
    assert GunicornSettings() == GunicornSettings("127.0.0.1:8123", 8, 2, None)
    monkeypatch.setenv("BIND", "0.0.0.0:9000")
    monkeypatch.setenv("GUNICORN_THREADS", "4")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("WEB_METRICS_PORT", "9100")
    assert GunicornSettings() == GunicornSettings("0.0.0.0:9000", 4, 3, 9100)


def test_the_metrics_directory_is_the_given_one_or_a_fresh_one_named_for_prometheus(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert claim_metrics_dir() == (tmp_path, False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    fresh, owned = claim_metrics_dir()
    try:
        assert owned and fresh.is_dir()
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(fresh)
    finally:
        fresh.rmdir()


def test_the_events_tail_reads_kafka_from_bus_url_or_a_bare_broker_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092")
    assert EventsTailSettings().kafka_url("kafka://k2:9092") == "kafka://k2:9092"
    assert EventsTailSettings().kafka_url("inprocess://") == "kafka://k1:9092"
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    with pytest.raises(ValueError, match="KAFKA_BOOTSTRAP_SERVERS"):
        EventsTailSettings().kafka_url("inprocess://")
