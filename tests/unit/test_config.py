from __future__ import annotations

import pytest

from app.config import DEV_JWT_SECRET, Settings


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
