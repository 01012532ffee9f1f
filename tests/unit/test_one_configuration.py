"""The process environment is read in one place, app/config.py; the production code elsewhere never reads it.

Tests may set variables as they like: what matters is that the service, its
processes and gunicorn's config see their settings only through app/config.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.config import PROJECT_ROOT

PRODUCTION = ("app", "consumers", "scheduler", "wsgi.py", "gunicorn.conf.py")
THE_ONE_HOME = PROJECT_ROOT / "app" / "config.py"
# os's ways into the process environment.
_ENV_NAMES = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})


def environment_reads(source: str, filename: str) -> list[int]:
    """Line numbers where `source` touches the process environment through os, however imported."""
    tree = ast.parse(source, filename=filename)
    os_names = {"os"}
    direct: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names |= {alias.asname or alias.name for alias in node.names if alias.name == "os"}
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            direct |= {alias.asname or alias.name for alias in node.names if alias.name in _ENV_NAMES}
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in _ENV_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.Name) and node.id in direct:
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and direct & {a.name for a in node.names}:
            lines.append(node.lineno)
    return sorted(set(lines))


def production_files() -> list[Path]:
    files = []
    for name in PRODUCTION:
        path = PROJECT_ROOT / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_only_app_config_reads_the_environment() -> None:
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)}:{line}"
        for path in production_files()
        if path != THE_ONE_HOME
        for line in environment_reads(path.read_text(), str(path))
    ]
    assert offenders == [], "read the environment in app/config.py and hand the setting over instead"


def test_the_scan_sees_app_config_s_own_reads() -> None:
    # Guards the scan itself: if it saw nothing there, the test above would pass vacuously.
    assert environment_reads(THE_ONE_HOME.read_text(), str(THE_ONE_HOME))
    assert THE_ONE_HOME in production_files()


@pytest.mark.parametrize(
    "source",
    [
        "import os\nx = os.environ.get('A')",
        "import os\nx = os.getenv('A')",
        "import os\nx = os.environ['A']",
        "import os as o\nx = o.environ",
        "from os import environ\nx = environ['A']",
        "from os import getenv as g\nx = g('A')",
        "import os\nos.putenv('A', 'b')",
        "def f():\n    import os\n    return os.environ",
    ],
)
def test_every_way_to_the_environment_is_seen(source: str) -> None:
    assert environment_reads(source, "example.py")


@pytest.mark.parametrize(
    "source",
    [
        "x = request.environ.get('SERVER_NAME')",  # a WSGI request's environ is not the process's
        "import os\nx = os.getpid()",
        "environ = {}\nx = environ['A']",
    ],
)
def test_lookalikes_are_not_environment_reads(source: str) -> None:
    assert environment_reads(source, "example.py") == []
