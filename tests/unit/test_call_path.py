"""How many of the project's files a POST and a settlement pass through.

A rule with one home keeps these paths short: each file a request enters is
one more place a rule could be restated. The bounds come from issue 15 and
the figures are in docs/architecture.md.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from app.api.auth import issue_token
from app.factory import create_app
from app.ports.bus import EngineResult
from consumers.reference_engine import ReferenceEngine
from consumers.settlement import SettlementConsumer
from tests.conftest import TEST_TOKEN_POLICY, embedded_settings, random_user_id
from tests.support.call_trace import project_files_entered
from tests.support.inprocess_bus import deliver_queued, ignore

POST_FILES_AT_MOST = 20
SETTLEMENT_FILES_AT_MOST = 15


def _bearer(user_id: int, *, operator: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(TEST_TOKEN_POLICY, user_id, operator=operator, ttl_seconds=600)}"}


def test_a_post_and_its_settlement_enter_few_files(tmp_path: Path) -> None:
    app = create_app(embedded_settings(tmp_path))
    container = app.extensions["internal_transfer"]
    client = app.test_client()
    user_id = random_user_id()
    funded = client.post(
        "/api/v1/admin/deposits",
        json={"user_id": user_id, "asset": "USDT", "amount": "1000", "reason": "test funds"},
        headers={**_bearer(1, operator=True), "Idempotency-Key": f"fund-{uuid.uuid4().hex}"},
    )
    assert funded.status_code == 201
    body = {
        "from_account": {"account_type": "funding", "asset": "USDT"},
        "to_account": {"account_type": "spot", "asset": "USDT"},
        "amount": "10",
    }
    # A first POST warms what is done once per process (imports, caches, the quota's opening).
    warm_headers = {**_bearer(user_id), "Idempotency-Key": uuid.uuid4().hex}
    warm = client.post("/api/v1/user/internal_transfer", json=body, headers=warm_headers)
    assert warm.status_code == 202
    engine = ReferenceEngine(container.bus.engine_side())
    settlement = SettlementConsumer(container.bus, container.settle)
    deliver_queued(container.bus, engine.handle_batch, settlement.handle_batch)

    # As real clients send it: every POST carries an Idempotency-Key.
    headers = {**_bearer(user_id), "Idempotency-Key": uuid.uuid4().hex}
    with project_files_entered() as post_files:
        response = client.post("/api/v1/user/internal_transfer", json=body, headers=headers)
    assert response.status_code == 202, response.json
    request_id = str(response.get_json()["request_id"])

    # The engine answers outside the trace; settlement of its answer is traced alone.
    results: list[EngineResult] = []
    deliver_queued(container.bus, engine.handle_batch, results.extend)
    assert len(results) == 1
    with project_files_entered() as settlement_files:
        settlement.handle_batch(results)
    deliver_queued(container.bus, ignore, ignore)
    settled = client.get(f"/api/v1/user/internal_transfer/{request_id}", headers=_bearer(user_id))
    assert settled.get_json()["status"] == "success"
    container.close()

    print(f"\nPOST /internal_transfer enters {len(post_files)} project files:")
    print("\n".join(f"  {name}" for name in sorted(post_files)))
    print(f"settlement enters {len(settlement_files)} project files:")
    print("\n".join(f"  {name}" for name in sorted(settlement_files)))
    assert len(post_files) <= POST_FILES_AT_MOST
    assert len(settlement_files) <= SETTLEMENT_FILES_AT_MOST
