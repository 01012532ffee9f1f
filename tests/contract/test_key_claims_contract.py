"""Idempotency-Key claims: every ledger keeps the first claim of a key for good, and hands it to later claimers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from app.domain.transfer import fingerprint_of
from app.ports.ledger import IdempotencyClaim, Ledger
from tests.conftest import random_request_id, random_user_id


def a_claim(body: str) -> IdempotencyClaim:
    return IdempotencyClaim(request_id=random_request_id(), fingerprint=fingerprint_of([body]))


def test_the_first_claim_holds_and_later_claimers_get_it(ledger: Ledger) -> None:
    user_id = random_user_id()
    first, second = a_claim("a"), a_claim("b")
    assert ledger.claim_idempotency_key(user_id, "key-1", first) is None
    assert ledger.claim_idempotency_key(user_id, "key-1", second) == first
    # Same body, other block: still the first claim.
    assert ledger.claim_idempotency_key(user_id, "key-1", a_claim("a")) == first


def test_the_same_claim_sent_again_finds_itself(ledger: Ledger) -> None:
    # A claim whose answer was lost in transit is sent again as it was.
    user_id, claim = random_user_id(), a_claim("a")
    assert ledger.claim_idempotency_key(user_id, "key-1", claim) is None
    assert ledger.claim_idempotency_key(user_id, "key-1", claim) is None
    assert ledger.claim_idempotency_key(user_id, "key-1", a_claim("b")) == claim


def test_keys_belong_to_their_user_and_differ_by_every_character(ledger: Ledger) -> None:
    user_id, other_user = random_user_id(), random_user_id()
    claims = {key: a_claim(key) for key in ("key-1", "key-2", "Key-1", "key-1 ", "ключ-1")}
    for key, claim in claims.items():
        assert ledger.claim_idempotency_key(user_id, key, claim) is None
    assert ledger.claim_idempotency_key(other_user, "key-1", a_claim("x")) is None
    for key, claim in claims.items():
        assert ledger.claim_idempotency_key(user_id, key, a_claim("y")) == claim


def test_the_largest_ids_and_fingerprints_come_back_exactly(ledger: Ledger) -> None:
    user_id = (1 << 64) - 1
    claim = IdempotencyClaim(request_id=(1 << 64) - 1, fingerprint="f" * 32)
    key = f"largest-{random_request_id()}"
    assert ledger.claim_idempotency_key(user_id, key, claim) is None
    assert ledger.claim_idempotency_key(user_id, key, a_claim("other")) == claim
    small = IdempotencyClaim(request_id=1, fingerprint="0" * 31 + "1")
    key = f"smallest-{random_request_id()}"
    assert ledger.claim_idempotency_key(user_id, key, small) is None
    assert ledger.claim_idempotency_key(user_id, key, a_claim("other")) == small


def test_concurrent_claims_of_one_key_have_one_winner(ledger: Ledger) -> None:
    user_id = random_user_id()
    claims = [a_claim(str(n)) for n in range(10)]
    start = threading.Barrier(len(claims))

    def claim(candidate: IdempotencyClaim) -> IdempotencyClaim | None:
        start.wait()
        return ledger.claim_idempotency_key(user_id, "same-key", candidate)

    with ThreadPoolExecutor(len(claims)) as pool:
        holders = list(pool.map(claim, claims))
    winners = [c for c, h in zip(claims, holders, strict=True) if h is None]
    assert len(winners) == 1
    assert all(h == winners[0] for h in holders if h is not None)
