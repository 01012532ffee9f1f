"""`python -m consumers.events_tail` against the real Kafka: one user's events, deduplicated, one line each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from app.config import PROJECT_ROOT
from app.domain.events import StatusEvent
from app.domain.transfer import API, SETTLEMENT, FailureReason, Status
from tests.conftest import make_transfer, random_user_id
from tests.support.kafka_fixtures import KafkaTestBuses


def _tail(buses: KafkaTestBuses, *args: str) -> list[str]:
    env = {**os.environ, "BUS_URL": buses.url()}
    done = subprocess.run(
        [sys.executable, "-m", "consumers.events_tail", *args, "--from-beginning", "--timeout", "60"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_tail_prints_one_users_events_once_each(kafka_buses: KafkaTestBuses) -> None:
    user, other = random_user_id(), random_user_id()
    mine = make_transfer(user, 150_000_000)  # 1.5 USDT
    theirs = make_transfer(other, 7)
    now = datetime.now(UTC)
    pending = mine.moved_to(Status.PENDING, now + timedelta(milliseconds=1))
    failed = pending.moved_to(Status.FAILED, now + timedelta(milliseconds=2), FailureReason.REJECTED_BY_ENGINE)
    events = [
        StatusEvent.status_changed(None, mine, API, "accepted"),
        StatusEvent.status_changed(None, theirs, API, "accepted"),
        StatusEvent.status_changed(mine, pending, API, "funds locked"),
        StatusEvent.status_changed(mine, pending, API, "funds locked"),  # delivered twice: printed once
        StatusEvent.status_changed(pending, failed, SETTLEMENT, "rejected by the engine: account frozen"),
    ]
    kafka_buses.service().publish_events(events)

    lines = _tail(kafka_buses, "--user-id", str(user), "--max-events", "3")
    assert len(lines) == 3
    assert all(f" {mine.request_id} USDT 1.50000000 funding->spot " in line for line in lines)
    assert lines[0].endswith("- -> requesting by api: accepted")
    assert lines[1].endswith("requesting -> pending by api: funds locked")
    assert lines[2].endswith(
        "pending -> failed [REJECTED_BY_ENGINE] by settlement: rejected by the engine: account frozen"
    )

    as_json = _tail(kafka_buses, "--user-id", str(other), "--json", "--max-events", "1")
    assert [StatusEvent.from_message(json.loads(line)) for line in as_json] == [events[1]]


def test_tail_without_kafka_says_what_it_needs() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("BUS_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    done = subprocess.run(
        [sys.executable, "-m", "consumers.events_tail", "--user-id", "1"],
        env={**env, "BUS_URL": "inprocess://"},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "BUS_URL=kafka://" in done.stderr
