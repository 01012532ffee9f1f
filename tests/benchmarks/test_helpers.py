"""The benchmark's pure helpers (no timing, no servers)."""

from __future__ import annotations

import math
from pathlib import Path

import jwt
import pytest

from tests.benchmarks.procstat import (
    CLOCK_TICKS,
    descendants,
    parse_listen_inodes,
    parse_machine_busy,
    parse_stat,
    parse_status_kib,
)
from tests.benchmarks.service_load import tokens_like
from tests.benchmarks.services import loopback_only, procfile_commands
from tests.benchmarks.stats import percentile, ratio


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 0.999) == 100
    assert percentile([7.0], 0.999) == 7
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError):
        percentile(values, 0)


def test_ratio_is_none_without_a_denominator() -> None:
    assert ratio(1, 4) == 0.25
    assert ratio(1, None) is None
    assert ratio(None, 2) is None
    assert ratio(1, 0) is None


def test_parse_stat_survives_spaces_and_parentheses_in_the_name() -> None:
    fields = ["S", "41"] + ["0"] * 9 + [str(3 * CLOCK_TICKS), str(CLOCK_TICKS)] + ["0"] * 30
    text = "1234 (gunicorn: worker (a) b) " + " ".join(fields)
    ppid, seconds = parse_stat(text)
    assert ppid == 41
    assert seconds == pytest.approx(4.0)


def test_parse_status_reads_kib() -> None:
    text = "Name:\tpython\nVmPeak:\t  200 kB\nVmHWM:\t   81234 kB\nVmRSS:\t 80000 kB\n"
    assert parse_status_kib(text, "VmHWM") == 81234
    assert parse_status_kib(text, "VmSwap") is None


def test_descendants_walks_the_whole_tree() -> None:
    parent_of = {10: 1, 11: 10, 12: 10, 13: 11, 20: 1}
    assert sorted(descendants(10, parent_of)) == [10, 11, 12, 13]


def test_machine_busy_leaves_idle_and_iowait_out() -> None:
    ticks = CLOCK_TICKS
    text = f"cpu  {ticks} 0 {ticks} {5 * ticks} {ticks} 0 0 0 0 0\ncpu0 ...\n"
    assert parse_machine_busy(text) == pytest.approx(2.0)


def test_listen_inodes_match_state_and_port() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:2352 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1\n"
        "   1: 0100007F:2352 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 556 1\n"
        "   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 557 1\n"
    )
    assert parse_listen_inodes(text, 9042) == {555}


def test_procfile_and_loopback(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: gunicorn --bind 0.0.0.0:$PORT wsgi:app\nworker: python -m w\n")
    commands = procfile_commands(tmp_path)
    assert commands["worker"] == "python -m w"
    assert loopback_only(commands["web"]) == "gunicorn --bind 127.0.0.1:$PORT wsgi:app"


def test_tokens_keep_the_cli_claims_but_change_the_subject() -> None:
    secret = "s" * 40
    template = jwt.encode({"sub": "7", "role": "user", "iat": 1, "exp": 4_000_000_000}, secret, algorithm="HS256")
    minted = tokens_like(template, secret, [8, 9])
    claims = jwt.decode(minted[9], secret, algorithms=["HS256"])
    assert claims == {"sub": "9", "role": "user", "iat": 1, "exp": 4_000_000_000}
