"""With the public development secrets anyone can mint an operator token: the service serves loopback only."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from app.config import PROJECT_ROOT, Settings
from app.factory import create_app
from tests.support.processes import free_port, service_env


def test_gunicorn_refuses_to_start_on_a_public_address(tmp_path: Path) -> None:
    env = service_env(tmp_path)
    for name in ("JWT_SECRET", "OPERATOR_JWT_SECRET", "BIND"):
        env.pop(name, None)
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    # The check runs before gunicorn creates its sockets: nothing ever listens on 0.0.0.0.
    argv = [gunicorn, "-c", "gunicorn.conf.py", "--bind", f"0.0.0.0:{free_port()}", "wsgi:app"]
    done = subprocess.run(argv, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "refusing to listen on 0.0.0.0" in done.stdout + done.stderr


@pytest.fixture
def dev_app(tmp_path: Path) -> Iterator[Flask]:
    settings = Settings(
        store_url=f"sqlite:///{tmp_path}/store.db",
        ledger_url=f"embedded:///{tmp_path}/ledger.db",
        bus_url="inprocess://",
        jwt_secret="",
        operator_jwt_secret="",
        background_workers="0",
    )
    app = create_app(settings)
    yield app
    app.extensions["internal_transfer"].close()


def test_any_other_server_bound_beyond_loopback_gets_no_answer(dev_app: Flask) -> None:
    client = dev_app.test_client()
    # gunicorn and werkzeug both put the listener's own address in SERVER_NAME (a test, nothing binds here).
    refused = client.get("/api/v1/assets", environ_overrides={"SERVER_NAME": "0.0.0.0"})  # noqa: S104
    assert refused.status_code == 403
    assert refused.json is not None and refused.json["error"]["code"] == "PERMISSION_DENIED"
    assert client.get("/api/v1/assets", environ_overrides={"SERVER_NAME": "127.0.0.1"}).status_code == 200
