"""The money invariants, checked against the store, the ledger and the engine.

Used by the crash and chaos tests after the system has quiesced, and
usable by operators on a quiet system. Every violation is a sentence.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from app.domain.ledger_answers import agrees
from app.domain.limits import QuotaKey
from app.domain.transfer import AccountType, Status, Transfer
from app.ports.ledger import LedgerState
from app.services.dependencies import Dependencies


@dataclass(frozen=True)
class Acknowledged:
    """A transfer the API acknowledged to a client (2xx or 422)."""

    user_id: int
    request_id: int
    idempotency_key: str | None


@dataclass
class InvariantReport:
    checked_transfers: int = 0
    open_transfers: list[int] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def check_invariants(
    deps: Dependencies,
    user_ids: Iterable[int],
    deposits: Mapping[tuple[int, str], int],
    acknowledged: Iterable[Acknowledged] = (),
    engine_applied: Mapping[int, str] | None = None,
    allow_open: bool = False,
) -> InvariantReport:
    """Check every invariant for these users.

    `deposits` is what was credited per (user, asset); `engine_applied` maps a
    request id to the engine's one recorded outcome ("confirmed"/"rejected").
    """
    report = InvariantReport()
    by_id: dict[int, Transfer] = {}
    for user_id in user_ids:
        for transfer in _all_transfers(deps, user_id):
            by_id[transfer.request_id] = transfer
    report.checked_transfers = len(by_id)

    for ack in acknowledged:
        found = by_id.get(ack.request_id)
        if found is None or found.user_id != ack.user_id:
            report.violations.append(f"acknowledged transfer {ack.request_id} of user {ack.user_id} is missing")

    # A batch's legs carry its key: one submission per batch, one per single transfer.
    submissions = {
        (t.user_id, t.idempotency_key, t.batch_id if t.batch_id is not None else t.request_id)
        for t in by_id.values()
        if t.idempotency_key
    }
    keys = Counter((user_id, key) for user_id, key, _ in submissions)
    for (user_id, key), count in keys.items():
        if count > 1:
            report.violations.append(f"idempotency key {key!r} of user {user_id} made {count} transfers")

    states: dict[int, LedgerState] = {}
    locked: dict[tuple[int, str, AccountType], int] = defaultdict(int)
    # Per day's quota: what the ledger should hold pending and have consumed for these transfers.
    quota_held: dict[QuotaKey, int] = defaultdict(int)
    quota_posted: dict[QuotaKey, int] = defaultdict(int)
    for transfer in by_id.values():
        asset = deps.catalog.get(transfer.asset)
        state = deps.moves.state_of(transfer, asset)
        states[transfer.request_id] = state
        quota = QuotaKey.of_transfer(transfer, asset)
        if state == LedgerState.PENDING:
            quota_held[quota] += transfer.amount
        elif state == LedgerState.POSTED:
            quota_posted[quota] += transfer.amount
        else:
            quota_held.setdefault(quota, 0)  # still checked: a refused or voided lock holds no quota
        if not transfer.status.is_terminal:
            report.open_transfers.append(transfer.request_id)
            if not allow_open:
                report.violations.append(f"transfer {transfer.request_id} is still {transfer.status.value}")
        if not agrees(transfer, state):
            report.violations.append(
                f"transfer {transfer.request_id}: store says {transfer.status.value}, ledger says {state.value}"
            )
        if state == LedgerState.PENDING and not transfer.status.is_terminal:
            # Only a transfer still open may hold funds; any other lock is orphaned.
            locked[(transfer.user_id, transfer.asset, transfer.from_type)] += transfer.amount
        if engine_applied is not None:
            # The engine answers a batch once, by the batch's id.
            sent_as = transfer.batch_id if transfer.batch_id is not None else transfer.request_id
            _check_engine(report, transfer, engine_applied.get(sent_as))

    _check_quotas(report, deps, quota_held, quota_posted)
    _check_batches(report, deps, by_id, states)

    # Quota accounts are not funds: balances() reports funding and spot only.
    users = {user for user, _ in deposits} | {t.user_id for t in by_id.values()}
    for user_id in users:
        totals: dict[str, int] = defaultdict(int)
        for balance in deps.accounts.balances(user_id, list(deps.catalog)):
            totals[balance.asset] += balance.available + balance.locked
            held = locked.get((user_id, balance.asset, balance.account_type), 0)
            if balance.locked != held:
                report.violations.append(
                    f"user {user_id} {balance.asset} {balance.account_type.value}: {balance.locked} locked in the"
                    f" ledger, {held} held by open transfers (an orphaned lock)"
                )
        for asset in deps.catalog:
            expected = deposits.get((user_id, asset.symbol), 0)
            if totals.get(asset.symbol, 0) != expected:
                report.violations.append(
                    f"user {user_id} {asset.symbol}: funding + spot = {totals.get(asset.symbol, 0)}, "
                    f"deposits = {expected}"
                )
    return report


def _check_quotas(
    report: InvariantReport,
    deps: Dependencies,
    held: Mapping[QuotaKey, int],
    posted: Mapping[QuotaKey, int],
) -> None:
    """Each day's quota moves with its transfers' locks: the linked chains leave no other way.

    A quota holds pending exactly the transfers still locked in the ledger and
    has consumed exactly the posted ones (plus operators' cuts, for users with
    overrides), and is never overrun.
    """
    balances = deps.quotas.quota_balances(list(held.keys() | posted.keys()))
    overridden = {key.user_id for key in balances if deps.overrides.limit_overrides(key.user_id)}
    for key in held.keys() | posted.keys():
        balance = balances.get(key)
        label = f"user {key.user_id} {key.asset.symbol} {key.direction.value} day {key.day}"
        expected_held, expected_posted = held.get(key, 0), posted.get(key, 0)
        if balance is None:
            if expected_held or expected_posted:
                report.violations.append(f"{label}: transfers hold or used quota, but there is no quota account")
            continue
        if balance.held != expected_held:
            report.violations.append(f"{label}: quota holds {balance.held} pending, locked transfers {expected_held}")
        exact = key.user_id not in overridden
        if (balance.consumed != expected_posted) if exact else (balance.consumed < expected_posted):
            report.violations.append(f"{label}: quota consumed {balance.consumed}, posted transfers {expected_posted}")
        if balance.remaining < 0:
            report.violations.append(f"{label}: quota overrun: {balance}")


def _check_batches(
    report: InvariantReport,
    deps: Dependencies,
    by_id: Mapping[int, Transfer],
    states: Mapping[int, LedgerState],
) -> None:
    """All or nothing: a batch's legs are all recorded, in one ledger state, and end the same way."""
    for batch_id in sorted({t.batch_id for t in by_id.values() if t.batch_id is not None}):
        batch = deps.batches.get_batch(batch_id)
        if batch is None:
            report.violations.append(f"batch {batch_id} has legs but no record")
            continue
        legs = deps.transfers.get_many(batch.request_ids)
        if len(legs) != len(batch.request_ids):
            missing = sorted(set(batch.request_ids) - set(legs))
            report.violations.append(f"batch {batch_id}: legs {missing} are not recorded")
        leg_states = {states.get(i) or deps.moves.state_of(t, deps.catalog.get(t.asset)) for i, t in legs.items()}
        # A fenced leg and its never-locked siblings are equally "nothing locked".
        if len(leg_states - {LedgerState.ABSENT, LedgerState.FENCED}) > 1 or (
            leg_states & {LedgerState.PENDING, LedgerState.POSTED, LedgerState.VOIDED}
            and leg_states & {LedgerState.ABSENT, LedgerState.FENCED}
        ):
            seen = sorted(state.value for state in leg_states)
            report.violations.append(f"batch {batch_id}: legs differ in the ledger: {seen}")
        ends = {t.status for t in legs.values() if t.status.is_terminal}
        if len(ends) > 1:
            report.violations.append(f"batch {batch_id}: some legs succeeded and some failed")


def _check_engine(report: InvariantReport, transfer: Transfer, applied: str | None) -> None:
    if transfer.status == Status.SUCCESS and applied != "confirmed":
        report.violations.append(f"transfer {transfer.request_id} succeeded but the engine recorded {applied}")
    if transfer.failure_reason == "REJECTED_BY_ENGINE" and applied != "rejected":
        report.violations.append(f"transfer {transfer.request_id} was rejected but the engine recorded {applied}")
    if transfer.status == Status.FAILED and applied == "confirmed" and transfer.failure_reason != "VOIDED_BY_OPERATOR":
        report.violations.append(f"transfer {transfer.request_id} failed but the engine applied it")


def _all_transfers(deps: Dependencies, user_id: int) -> list[Transfer]:
    found: list[Transfer] = []
    cursor = None
    while True:
        page = deps.transfers.history(user_id, 100, cursor)
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor
