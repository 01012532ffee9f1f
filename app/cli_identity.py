"""Who runs a CLI command: the name typed with `--operator`, and the OS account and host it runs as."""

from __future__ import annotations

import os
import pwd
import socket

from app.domain.transfer import AuditActor


def os_login() -> str | None:
    """The login name of the process's real uid, from the password database.

    Not getpass.getuser(): it believes LOGNAME and USER, which the caller sets.
    """
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a container's uid with no password entry
        return None


def cli_actor(stated: str) -> AuditActor:
    """The audit actor of a CLI action: `--operator` is only what was typed; the OS's answer goes next to it."""
    return AuditActor.cli(stated, AuditActor.recordable_os_user(os_login(), os.getuid()), socket.gethostname())
