"""The README's "Try it" block works when pasted, as written, into a shell at the root of a fresh clone.

The tree is a copy of the checkout's tracked files in a temporary directory,
with no `var/` and no configuration in the environment (so the development
secret and the embedded backends are used, as for a newcomer). Its `.venv`
links to this checkout's, which `make` already built from the same pinned
requirements (copies keep their times, so `make run` finds it up to date).
Two things differ from a newcomer's shell, both needed to run it here: the
port (`localhost:8000` becomes a free one, and PORT is set to it) and job
control (`set -m`, on in any interactive shell, off in `bash -c`), which
`kill %1` needs to stop make and gunicorn together.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

from app.config import PROJECT_ROOT
from tests.support.processes import free_port

# Variables a newcomer's shell does not have (they would move the service off its defaults).
CONFIG_VARS = (
    "JWT_SECRET",
    "STORE_URL",
    "LEDGER_URL",
    "BUS_URL",
    "BACKGROUND_WORKERS",
    "ASSETS_FILE",
    "BIND",
    "CRASH_POINTS",
    "REFERENCE_ENGINE_REJECT_SUFFIX",
)


def try_it_blocks() -> list[str]:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index("## Try it") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 2, "the Try it section has the run block and the stop block"
    return blocks


def fresh_copy(target: Path) -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout.split(
        b"\0"
    )
    for name in filter(None, tracked):
        source = PROJECT_ROOT / name.decode()
        if source.is_file():
            (target / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name.decode())
    (target / ".venv").symlink_to(PROJECT_ROOT / ".venv")


def processes_in(directory: Path) -> list[int]:
    """Pids whose working directory is `directory`: only what this test started runs there."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == directory:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_the_try_it_block_runs_as_pasted(tmp_path: Path) -> None:
    assert shutil.which("curl"), "the Try it block needs curl"
    clone = tmp_path / "clone"
    clone.mkdir()
    fresh_copy(clone)
    port = free_port()
    run_block, stop_block = (block.replace("localhost:8000", f"localhost:{port}") for block in try_it_blocks())
    env = {key: value for key, value in os.environ.items() if key not in CONFIG_VARS}
    env["PORT"] = str(port)
    script = f"set -m\n{run_block}\n{stop_block}\nwait\n"
    try:
        result = subprocess.run(
            ["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=300, check=False
        )
    finally:
        leftovers = processes_in(clone)
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
    assert leftovers == [], "kill %1 stopped the service"
    out_lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(out_lines) == 3, (result.stdout, result.stderr[-3000:])
    deposit, transfer, balances = (json.loads(line) for line in out_lines)
    assert deposit["user_id"] == 3001 and deposit["amount"] == "1000.00000000", deposit
    assert transfer["amount"] == "100.00000000" and transfer["status"] in ("pending", "success"), transfer
    usdt = {b["account_type"]: b for b in balances["balances"] if b["asset"] == "USDT"}
    assert usdt["funding"]["available"] == "900.00000000", balances
    assert usdt["spot"]["available"] == "100.00000000", balances
    # The warning the README calls expected, on every CLI call (stderr, so the tokens stay clean).
    assert result.stderr.count("JWT_SECRET is not set") >= 2, result.stderr[-3000:]
