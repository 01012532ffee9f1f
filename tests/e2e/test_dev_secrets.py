"""With the public development secrets anyone can mint an operator token: the service serves loopback only."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from app.config import DEV_JWT_SECRET, DEV_OPERATOR_JWT_SECRET, PROJECT_ROOT, Settings
from app.factory import create_app
from tests.support.processes import free_port, service_env


def _gunicorn_with_the_development_secrets(tmp_path: Path, bind: str) -> subprocess.CompletedProcess[str]:
    env = service_env(tmp_path)
    for name in ("JWT_SECRET", "OPERATOR_JWT_SECRET", "BIND"):
        env.pop(name, None)
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    argv = [gunicorn, "-c", "gunicorn.conf.py", "--bind", bind, "wsgi:app"]
    return subprocess.run(argv, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False)


def test_gunicorn_refuses_to_start_on_a_public_address(tmp_path: Path) -> None:
    # The check runs before gunicorn creates its sockets: nothing ever listens on 0.0.0.0.
    done = _gunicorn_with_the_development_secrets(tmp_path, f"0.0.0.0:{free_port()}")
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


class _Connection:
    """What gunicorn and werkzeug put in the environ: the accepted connection, whose own address is the listener's."""

    def __init__(self, address: tuple[str, int] | str) -> None:
        self.address = address

    def getsockname(self) -> tuple[str, int] | str:
        return self.address


def _through(address: tuple[str, int] | str, host: str = "127.0.0.1") -> dict[str, object]:
    # SERVER_NAME and Host say loopback, whatever the connection says: both come from the client on a unix socket.
    return {"gunicorn.socket": _Connection(address), "SERVER_NAME": host, "HTTP_HOST": host}


def test_any_other_server_bound_beyond_loopback_gets_no_answer(dev_app: Flask) -> None:
    client = dev_app.test_client()
    refused = client.get("/api/v1/assets", environ_overrides=_through(("10.1.2.3", 8000)))
    assert refused.status_code == 403
    assert refused.json is not None and refused.json["error"]["code"] == "PERMISSION_DENIED"
    assert client.get("/api/v1/assets", environ_overrides=_through(("127.0.0.1", 8000))).status_code == 200
    werkzeug = {"werkzeug.socket": _Connection(("0.0.0.0", 5000)), "SERVER_NAME": "127.0.0.1"}  # noqa: S104
    assert client.get("/api/v1/assets", environ_overrides=werkzeug).status_code == 403


def test_the_request_guard_trusts_the_connection_not_the_host_header(dev_app: Flask) -> None:
    client = dev_app.test_client()
    # Behind a proxy on a unix socket, gunicorn builds SERVER_NAME from the Host header.
    assert client.get("/api/v1/assets", environ_overrides=_through("/run/web.sock", "localhost")).status_code == 403
    # A server that says nothing of its connection is not trusted either.
    assert client.get("/api/v1/assets", environ_overrides={"SERVER_NAME": "127.0.0.1"}).status_code == 403


def test_gunicorn_refuses_a_unix_socket_with_the_development_secrets(tmp_path: Path) -> None:
    # A proxy in front would make the socket reachable from anywhere.
    done = _gunicorn_with_the_development_secrets(tmp_path, f"unix:{tmp_path}/web.sock")
    assert done.returncode != 0
    assert "refusing to listen on unix:" in done.stdout + done.stderr
    assert not (tmp_path / "web.sock").exists()


@pytest.mark.parametrize("which", ["JWT_SECRET", "OPERATOR_JWT_SECRET", "both"])
def test_the_public_development_strings_are_refused_as_configured_secrets(tmp_path: Path, which: str) -> None:
    own = {"jwt_secret": "u" * 40, "operator_jwt_secret": "o" * 40}
    if which in ("JWT_SECRET", "both"):
        own["jwt_secret"] = DEV_JWT_SECRET
    if which in ("OPERATOR_JWT_SECRET", "both"):
        own["operator_jwt_secret"] = DEV_OPERATOR_JWT_SECRET
    settings = Settings(
        store_url=f"sqlite:///{tmp_path}/store.db",
        ledger_url=f"embedded:///{tmp_path}/ledger.db",
        bus_url="inprocess://",
        jwt_secret=own["jwt_secret"],
        operator_jwt_secret=own["operator_jwt_secret"],
    )
    with pytest.raises(RuntimeError, match="public development"):
        create_app(settings)
