"""The repository's nginx config (ops/nginx/internal-transfer.conf) in front of a test's gunicorn, on loopback.

Debian's nginx, installed on demand (tests/support/debian.py). The site file
is used as it is, but for its listen port and its upstream's address; the
rest of nginx.conf (pid, logs, temporary files) lives in the test's directory.
Stopped by the pid it was started with.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from app.config import PROJECT_ROOT
from tests.support.debian import ensure_package
from tests.support.processes import ServiceProcess, free_port

SITE = PROJECT_ROOT / "ops" / "nginx" / "internal-transfer.conf"


def _binary() -> str | None:
    # Debian puts it in /usr/sbin, which a non-root PATH may lack.
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")


def ensure_nginx() -> str:
    return ensure_package("nginx", _binary, "nginx")


def site_for(listen_port: int, upstream_port: int) -> str:
    """The site file with this test's ports; fails if the file no longer has the lines it rewrites."""
    text = SITE.read_text()
    text, listens = re.subn(r"(?m)^(\s*listen )\d+;", rf"\g<1>127.0.0.1:{listen_port};", text)
    text, upstreams = re.subn(r"(?m)^(\s*server )127\.0\.0\.1:\d+;", rf"\g<1>127.0.0.1:{upstream_port};", text)
    assert (listens, upstreams) == (1, 1), f"{SITE} no longer has one listen and one upstream server line"
    return text


def _main_config(directory: Path, site: Path) -> str:
    temporary = "\n".join(
        f"    {kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers switch to `user`: keep them this user, who owns the test's directory.
    user = f"user {pwd.getpwuid(os.getuid()).pw_name};" if os.geteuid() == 0 else ""
    return f"""{user}
daemon off;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "nginx-error.log"} warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
{temporary}
    include {site};
}}
"""


@contextlib.contextmanager
def nginx_in_front(upstream_port: int, directory: Path) -> Iterator[int]:
    """nginx with the repository's site config, proxying to `upstream_port`; yields its port."""
    binary = ensure_nginx()
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    site = directory / "internal-transfer.conf"
    site.write_text(site_for(port, upstream_port))
    config = directory / "nginx.conf"
    config.write_text(_main_config(directory, site))
    process = ServiceProcess("nginx", [binary, "-p", str(directory), "-c", str(config)], dict(os.environ), directory)
    process.start()
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if not process.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start; see {process.log_path} and {directory / 'nginx-error.log'}")
            time.sleep(0.1)
        yield port
    finally:
        process.stop()
