"""A single-process ledger on SQLite that keeps TigerBeetle's rules.

It is a development stand-in, not a second implementation to trust with
money: no overdraft on user accounts, id-idempotent creates, a pending
transfer resolved at most once, and ids that failed for a reason that
could change later stay failed (TigerBeetle's `id_already_failed`), and
linked chains that land whole or not at all, answered event by event as
TigerBeetle answers them (`linked_event_failed` for the rest of the chain).
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace

from app.adapters.opened_quotas import OpenedQuotas, resolve_limit
from app.adapters.sqlite_util import SqliteDatabase
from app.domain.account_model import (
    ACCOUNT_CODE_OF,
    QUOTA_CODE_OF,
    QUOTA_CUTS_CODE_OF,
    AccountCode,
    Direction,
    TransferCode,
    account_id,
    deposit_transfer_id,
    key_claim_id,
    limit_source_account_id,
    lock_id,
    quota_account_id,
    quota_cut_id,
    quota_cut_order_id,
    quota_cuts_account_id,
    quota_grant_id,
    quota_lock_id,
    quota_raise_catch_up_id,
    quota_resolution_id,
    quota_void_catch_up_id,
    resolution_id,
    system_account_id,
)
from app.domain.limits import QuotaBalance, QuotaKey, QuotaOpening
from app.domain.money import Asset
from app.domain.transfer import AccountType, Transfer
from app.ports.errors import LedgerInvariantBroken
from app.ports.ledger import (
    AccountBalance,
    BatchLeg,
    BatchLockOutcome,
    DepositOutcome,
    FenceOutcome,
    IdempotencyClaim,
    Ledger,
    LedgerState,
    LimitSource,
    LockOutcome,
    Resolution,
    ResolveOutcome,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, ledger INTEGER NOT NULL, code INTEGER NOT NULL,
    -- 0: no limit; 1: debits must not exceed credits; 2: credits must not exceed debits
    no_overdraft INTEGER NOT NULL,
    debits_pending TEXT NOT NULL DEFAULT '0', debits_posted TEXT NOT NULL DEFAULT '0',
    credits_pending TEXT NOT NULL DEFAULT '0', credits_posted TEXT NOT NULL DEFAULT '0'
);
CREATE TABLE IF NOT EXISTS transfers (
    id TEXT PRIMARY KEY, debit_account TEXT NOT NULL, credit_account TEXT NOT NULL,
    amount TEXT NOT NULL, pending_id TEXT, ledger INTEGER NOT NULL, code INTEGER NOT NULL,
    kind TEXT NOT NULL, user_data_32 INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS failed_ids (id TEXT PRIMARY KEY);
-- Idempotency-Key claims by key_claim_id: TigerBeetle keeps the same two values in the claim's user data.
CREATE TABLE IF NOT EXISTS key_claims (id TEXT PRIMARY KEY, request_id TEXT NOT NULL, fingerprint TEXT NOT NULL);
"""

# Amounts are stored as decimal text: SQLite integers stop at 2^63 and
# TigerBeetle's at 2^128.


class _Kind(enum.StrEnum):
    SINGLE = "single"
    PENDING = "pending"
    POST = "post"
    VOID = "void"
    # At most the amount: as much as the debit account's and the credit account's limits allow
    # (TigerBeetle's balancing_debit | balancing_credit).
    BALANCING_DEBIT = "balancing_debit"


class _Limit(enum.IntEnum):
    NONE = 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 2


class _Result(enum.Enum):
    OK = "ok"
    EXISTS = "exists"
    EXISTS_DIFFERENT = "exists_with_different_fields"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"
    ACCOUNT_NOT_FOUND = "account_not_found"
    PENDING_NOT_FOUND = "pending_transfer_not_found"
    PENDING_NOT_PENDING = "pending_transfer_not_pending"
    ALREADY_POSTED = "pending_transfer_already_posted"
    ALREADY_VOIDED = "pending_transfer_already_voided"
    ID_ALREADY_FAILED = "id_already_failed"
    LINKED_EVENT_FAILED = "linked_event_failed"


# Failures that depend on state which may change; TigerBeetle reserves the id.
_TRANSIENT = {_Result.EXCEEDS_CREDITS, _Result.EXCEEDS_DEBITS, _Result.ACCOUNT_NOT_FOUND, _Result.PENDING_NOT_FOUND}
_ANY_EXISTS = {_Result.EXISTS, _Result.EXISTS_DIFFERENT}
_AMOUNT_MAX = 2**128 - 1
_CREATED_OR_EXISTS = {_Result.OK, _Result.EXISTS}


@dataclass(frozen=True)
class _Event:
    """One transfer to create, as TigerBeetle's create_transfers takes it."""

    ident: int
    kind: _Kind
    debit: int = 0
    credit: int = 0
    amount: int = 0
    ledger: int = 0
    code: int = 0
    pending_id: int | None = None
    user_data_32: int = 0


def _quota_account(key: QuotaKey) -> int:
    return quota_account_id(key.user_id, key.asset.ledger, key.direction, key.day)


def _quota_local(key: QuotaKey) -> tuple[int, int, Direction, int]:
    return key.user_id, key.asset.ledger, key.direction, key.day


def _grant(key: QuotaKey, version: int, amount: int, user_data_32: int = 0) -> _Event:
    return _Event(
        quota_grant_id(*_quota_local(key), version),
        _Kind.SINGLE,
        debit=limit_source_account_id(key.asset.ledger),
        credit=_quota_account(key),
        amount=amount,
        ledger=key.asset.ledger,
        code=TransferCode.QUOTA_GRANT,
        user_data_32=user_data_32,
    )


def _cuts_account(key: QuotaKey) -> int:
    return quota_cuts_account_id(*_quota_local(key))


def _catch_up(key: QuotaKey, ident: int) -> _Event:
    """Quota -> its cuts account, balancing: what a lowering still owes, from what the quota holds free."""
    return _Event(
        ident,
        _Kind.BALANCING_DEBIT,
        debit=_quota_account(key),
        credit=_cuts_account(key),
        amount=_AMOUNT_MAX,
        ledger=key.asset.ledger,
        code=TransferCode.QUOTA_CUT,
    )


def _adjustment_chain(key: QuotaKey, version: int, delta: int) -> list[_Event]:
    """A raise (grant, then pay what is owed), or a lowering (order it whole, then take what fits): one chain."""
    ledger = key.asset.ledger
    if delta > 0:
        return [_grant(key, version, delta), _catch_up(key, quota_raise_catch_up_id(*_quota_local(key), version))]
    order = _Event(
        quota_cut_order_id(*_quota_local(key), version),
        _Kind.SINGLE,
        debit=_cuts_account(key),
        credit=limit_source_account_id(ledger),
        amount=-delta,
        ledger=ledger,
        code=TransferCode.QUOTA_CUT_ORDER,
    )
    take = replace(_catch_up(key, quota_cut_id(*_quota_local(key), version)), amount=-delta)
    return [order, take]


def _state(lock: sqlite3.Row | None, resolution: sqlite3.Row | None) -> LedgerState:
    if lock is None:
        return LedgerState.ABSENT
    if lock["code"] == TransferCode.FENCE:
        return LedgerState.FENCED
    if resolution is None:
        return LedgerState.PENDING
    return LedgerState.POSTED if resolution["kind"] == _Kind.POST.value else LedgerState.VOIDED


class EmbeddedLedger(Ledger):
    def __init__(self, path: str) -> None:
        self._db = SqliteDatabase(path, "ledger", _SCHEMA)
        self._opened_quotas = OpenedQuotas()
        with self._db.transaction() as conn:
            # Files made before quotas lack the column that carries a grant's limit version.
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(transfers)")}
            if "user_data_32" not in columns:
                conn.execute("ALTER TABLE transfers ADD COLUMN user_data_32 INTEGER NOT NULL DEFAULT 0")

    # -- the TigerBeetle-like core --------------------------------------

    def _open(self, conn: sqlite3.Connection, ident: int, ledger: int, code: int, no_overdraft: bool) -> None:
        limit = _Limit.DEBITS_MUST_NOT_EXCEED_CREDITS if no_overdraft else _Limit.NONE
        self._open_limited(conn, ident, ledger, code, limit)

    def _open_limited(self, conn: sqlite3.Connection, ident: int, ledger: int, code: int, limit: _Limit) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO accounts (id, ledger, code, no_overdraft) VALUES (?, ?, ?, ?)",
            (str(ident), ledger, code, int(limit)),
        )

    def _open_cuts_account(self, conn: sqlite3.Connection, key: QuotaKey) -> None:
        ledger, code = key.asset.ledger, QUOTA_CUTS_CODE_OF[key.direction]
        self._open_limited(conn, _cuts_account(key), ledger, code, _Limit.CREDITS_MUST_NOT_EXCEED_DEBITS)

    def _account(self, conn: sqlite3.Connection, ident: int) -> dict[str, int] | None:
        row = conn.execute("SELECT * FROM accounts WHERE id = ?", (str(ident),)).fetchone()
        if row is None:
            return None
        return {
            "no_overdraft": row["no_overdraft"],
            "debits_pending": int(row["debits_pending"]),
            "debits_posted": int(row["debits_posted"]),
            "credits_pending": int(row["credits_pending"]),
            "credits_posted": int(row["credits_posted"]),
        }

    def _add(self, conn: sqlite3.Connection, ident: int, column: str, delta: int) -> None:
        current = conn.execute(f"SELECT {column} FROM accounts WHERE id = ?", (str(ident),)).fetchone()[0]
        conn.execute(f"UPDATE accounts SET {column} = ? WHERE id = ?", (str(int(current) + delta), str(ident)))

    def _create(
        self,
        conn: sqlite3.Connection,
        ident: int,
        kind: _Kind,
        *,
        debit: int = 0,
        credit: int = 0,
        amount: int = 0,
        ledger: int = 0,
        code: int = 0,
        pending_id: int | None = None,
        user_data_32: int = 0,
    ) -> _Result:
        existing = conn.execute("SELECT * FROM transfers WHERE id = ?", (str(ident),)).fetchone()
        if existing is not None:
            same = (
                existing["kind"] == kind.value
                and existing["code"] == code
                and (existing["pending_id"] or None) == (str(pending_id) if pending_id else None)
                and (
                    kind in (_Kind.POST, _Kind.VOID)
                    or (
                        # A balancing debit records what it moved, not what was asked.
                        (kind == _Kind.BALANCING_DEBIT or existing["amount"] == str(amount))
                        and existing["debit_account"] == str(debit)
                        and existing["credit_account"] == str(credit)
                        and existing["ledger"] == ledger
                    )
                )
            )
            return _Result.EXISTS if same else _Result.EXISTS_DIFFERENT
        if conn.execute("SELECT 1 FROM failed_ids WHERE id = ?", (str(ident),)).fetchone():
            return _Result.ID_ALREADY_FAILED
        result = self._apply(conn, ident, kind, debit, credit, amount, ledger, code, pending_id, user_data_32)
        if result in _TRANSIENT:
            conn.execute("INSERT INTO failed_ids (id) VALUES (?)", (str(ident),))
        return result

    def _apply(
        self,
        conn: sqlite3.Connection,
        ident: int,
        kind: _Kind,
        debit: int,
        credit: int,
        amount: int,
        ledger: int,
        code: int,
        pending_id: int | None,
        user_data_32: int,
    ) -> _Result:
        if kind in (_Kind.POST, _Kind.VOID):
            assert pending_id is not None
            pending = conn.execute("SELECT * FROM transfers WHERE id = ?", (str(pending_id),)).fetchone()
            if pending is None:
                return _Result.PENDING_NOT_FOUND
            if pending["kind"] != _Kind.PENDING.value:
                return _Result.PENDING_NOT_PENDING
            resolved = conn.execute("SELECT kind FROM transfers WHERE pending_id = ?", (str(pending_id),)).fetchone()
            if resolved is not None:
                return _Result.ALREADY_POSTED if resolved["kind"] == _Kind.POST.value else _Result.ALREADY_VOIDED
            debit, credit = int(pending["debit_account"]), int(pending["credit_account"])
            amount, ledger, code = int(pending["amount"]), pending["ledger"], pending["code"]
            self._add(conn, debit, "debits_pending", -amount)
            self._add(conn, credit, "credits_pending", -amount)
            if kind == _Kind.POST:
                self._add(conn, debit, "debits_posted", amount)
                self._add(conn, credit, "credits_posted", amount)
        else:
            debit_account, credit_account = self._account(conn, debit), self._account(conn, credit)
            if debit_account is None or credit_account is None:
                return _Result.ACCOUNT_NOT_FOUND
            if debit_account["no_overdraft"] == _Limit.DEBITS_MUST_NOT_EXCEED_CREDITS:
                committed = debit_account["debits_pending"] + debit_account["debits_posted"]
                if kind == _Kind.BALANCING_DEBIT:
                    amount = max(0, min(amount, debit_account["credits_posted"] - committed))
                elif committed + amount > debit_account["credits_posted"]:
                    return _Result.EXCEEDS_CREDITS
            if credit_account["no_overdraft"] == _Limit.CREDITS_MUST_NOT_EXCEED_DEBITS:
                committed = credit_account["credits_pending"] + credit_account["credits_posted"]
                if kind == _Kind.BALANCING_DEBIT:
                    amount = max(0, min(amount, credit_account["debits_posted"] - committed))
                elif committed + amount > credit_account["debits_posted"]:
                    return _Result.EXCEEDS_DEBITS
            prefix = "pending" if kind == _Kind.PENDING else "posted"
            self._add(conn, debit, f"debits_{prefix}", amount)
            self._add(conn, credit, f"credits_{prefix}", amount)
        conn.execute(
            "INSERT INTO transfers (id, debit_account, credit_account, amount, pending_id, ledger, code, kind,"
            " user_data_32) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(ident),
                str(debit),
                str(credit),
                str(amount),
                str(pending_id) if pending_id else None,
                ledger,
                code,
                kind.value,
                user_data_32,
            ),
        )
        return _Result.OK

    def _create_event(self, conn: sqlite3.Connection, event: _Event) -> _Result:
        return self._create(
            conn,
            event.ident,
            event.kind,
            debit=event.debit,
            credit=event.credit,
            amount=event.amount,
            ledger=event.ledger,
            code=event.code,
            pending_id=event.pending_id,
            user_data_32=event.user_data_32,
        )

    def _create_chain(self, conn: sqlite3.Connection, chain: Sequence[_Event]) -> list[_Result]:
        """A linked chain: all events land, or none does (TigerBeetle's `flags.linked`).

        As in TigerBeetle, the first event that does not land (`exists`
        included) gets its own result and every other event of the chain
        `linked_event_failed`; only the failing event's id can be remembered
        as failed.
        """
        conn.execute("SAVEPOINT chain")
        for index, event in enumerate(chain):
            result = self._create_event(conn, event)
            if result != _Result.OK:
                conn.execute("ROLLBACK TO SAVEPOINT chain")
                conn.execute("RELEASE SAVEPOINT chain")
                if result in _TRANSIENT:
                    conn.execute("INSERT OR IGNORE INTO failed_ids (id) VALUES (?)", (str(event.ident),))
                results = [_Result.LINKED_EVENT_FAILED] * len(chain)
                results[index] = result
                return results
        conn.execute("RELEASE SAVEPOINT chain")
        return [_Result.OK] * len(chain)

    # -- the port ---------------------------------------------------------

    def _open_user_accounts(self, conn: sqlite3.Connection, user_id: int, asset: Asset) -> None:
        self._open(conn, system_account_id(asset.ledger), asset.ledger, AccountCode.SYSTEM, False)
        for account_type, code in ACCOUNT_CODE_OF.items():
            self._open(conn, account_id(user_id, account_type, asset.ledger), asset.ledger, code, True)

    def open_accounts(self, user_id: int, asset: Asset) -> None:
        with self._db.transaction() as conn:
            self._open_user_accounts(conn, user_id, asset)

    def deposit(self, deposit_id: int, user_id: int, asset: Asset, amount: int) -> DepositOutcome:
        with self._db.transaction() as conn:
            self._open_user_accounts(conn, user_id, asset)
            result = self._create(
                conn,
                deposit_transfer_id(deposit_id),
                _Kind.SINGLE,
                debit=system_account_id(asset.ledger),
                credit=account_id(user_id, AccountType.FUNDING, asset.ledger),
                amount=amount,
                ledger=asset.ledger,
                code=TransferCode.DEPOSIT,
            )
        if result in (_Result.OK, _Result.EXISTS):
            return DepositOutcome.CREDITED
        if result == _Result.EXISTS_DIFFERENT:
            return DepositOutcome.CONFLICT
        raise LedgerInvariantBroken(f"deposit {deposit_id}: {result.value}")

    def claim_idempotency_key(self, user_id: int, key: str, claim: IdempotencyClaim) -> IdempotencyClaim | None:
        ident = str(key_claim_id(user_id, key))
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO key_claims (id, request_id, fingerprint) VALUES (?, ?, ?)",
                (ident, str(claim.request_id), claim.fingerprint),
            )
            row = conn.execute("SELECT request_id, fingerprint FROM key_claims WHERE id = ?", (ident,)).fetchone()
        holder = IdempotencyClaim(request_id=int(row["request_id"]), fingerprint=row["fingerprint"])
        # As in TigerBeetle, a claim sent again exactly as it landed finds itself ("exists").
        return None if holder == claim else holder

    def _open_quota_for(self, transfer: Transfer, asset: Asset, limit: LimitSource) -> QuotaKey:
        quota_key = QuotaKey.of_transfer(transfer, asset)
        if quota_key not in self._opened_quotas:
            # Opened before the lock: a lock naming a missing quota account would
            # fail its id for good (id_already_failed).
            opening = resolve_limit(limit)
            self.open_quota(quota_key, opening.limit, opening.version)
            self._opened_quotas.add(quota_key)
        return quota_key

    @staticmethod
    def _lock_chain(transfer: Transfer, asset: Asset, quota_key: QuotaKey) -> list[_Event]:
        return [
            _Event(
                lock_id(transfer.request_id),
                _Kind.PENDING,
                debit=account_id(transfer.user_id, transfer.from_type, asset.ledger),
                credit=account_id(transfer.user_id, transfer.to_type, asset.ledger),
                amount=transfer.amount,
                ledger=asset.ledger,
                code=TransferCode.INTERNAL_TRANSFER,
            ),
            _Event(
                quota_lock_id(transfer.request_id),
                _Kind.PENDING,
                debit=_quota_account(quota_key),
                credit=limit_source_account_id(asset.ledger),
                amount=transfer.amount,
                ledger=asset.ledger,
                code=TransferCode.QUOTA_USE,
            ),
        ]

    @staticmethod
    def _lock_outcome(move: _Result, quota: _Result) -> LockOutcome | None:
        """What a (move, quota) pair's results mean; None if neither was judged (linked_event_failed)."""
        if move in (_Result.OK, _Result.EXISTS):
            return LockOutcome.LOCKED
        if move in (_Result.EXCEEDS_CREDITS, _Result.ACCOUNT_NOT_FOUND, _Result.ID_ALREADY_FAILED):
            return LockOutcome.INSUFFICIENT_BALANCE
        if move == _Result.EXISTS_DIFFERENT:
            return LockOutcome.FENCED
        if move == _Result.LINKED_EVENT_FAILED and quota in (_Result.EXCEEDS_CREDITS, _Result.ID_ALREADY_FAILED):
            return LockOutcome.LIMIT_EXCEEDED
        return None

    def lock(self, transfer: Transfer, asset: Asset, limit: LimitSource) -> LockOutcome:
        chain = self._lock_chain(transfer, asset, self._open_quota_for(transfer, asset, limit))
        with self._db.transaction() as conn:
            move, quota = self._create_chain(conn, chain)
        outcome = self._lock_outcome(move, quota)
        if outcome is None:
            raise LedgerInvariantBroken(f"lock {transfer.request_id}: {move.value}, quota {quota.value}")
        return outcome

    def lock_batch(self, legs: Sequence[BatchLeg]) -> BatchLockOutcome:
        chain: list[_Event] = []
        for leg in legs:
            chain.extend(
                self._lock_chain(leg.transfer, leg.asset, self._open_quota_for(leg.transfer, leg.asset, leg.limit))
            )
        with self._db.transaction() as conn:
            results = self._create_chain(conn, chain)
        # As in TigerBeetle: the first event that did not land has its own
        # result, every other one linked_event_failed. A retry of a chain that
        # landed fails at its first event, `exists`: the whole chain is there.
        for index in range(len(legs)):
            outcome = self._lock_outcome(results[2 * index], results[2 * index + 1])
            if outcome is not None:
                return BatchLockOutcome(outcome, None if outcome == LockOutcome.LOCKED else index)
        raise LedgerInvariantBroken(f"lock batch of {legs[0].transfer.request_id}: {[r.value for r in results]}")

    @staticmethod
    def _resolution_chain(transfer: Transfer, asset: Asset, kind: _Kind) -> list[_Event]:
        chain = [
            _Event(resolution_id(transfer.request_id), kind, pending_id=lock_id(transfer.request_id)),
            _Event(quota_resolution_id(transfer.request_id), kind, pending_id=quota_lock_id(transfer.request_id)),
        ]
        if kind == _Kind.VOID:
            # What the void frees pays first what a lowering of this quota still owes.
            key = QuotaKey.of_transfer(transfer, asset)
            chain.append(_catch_up(key, quota_void_catch_up_id(transfer.request_id)))
        return chain

    def _resolve(self, conn: sqlite3.Connection, transfer: Transfer, asset: Asset, kind: _Kind) -> ResolveOutcome:
        if kind == _Kind.VOID:
            self._open_cuts_account(conn, QuotaKey.of_transfer(transfer, asset))
        chain = self._resolution_chain(transfer, asset, kind)
        result, quota = self._create_chain(conn, chain)[:2]
        if result == _Result.LINKED_EVENT_FAILED and quota in (_Result.PENDING_NOT_FOUND, _Result.ID_ALREADY_FAILED):
            # A lock made before limits existed has no quota debit: resolve it alone.
            result = self._create_event(conn, chain[0])
        elif result == _Result.LINKED_EVENT_FAILED:
            raise LedgerInvariantBroken(f"resolve {transfer.request_id}: quota answered {quota.value}")
        if result == _Result.EXISTS_DIFFERENT:
            row = conn.execute("SELECT kind FROM transfers WHERE id = ?", (str(chain[0].ident),)).fetchone()
            result = _Result.ALREADY_POSTED if row["kind"] == _Kind.POST.value else _Result.ALREADY_VOIDED
        if result == _Result.OK or result == _Result.EXISTS:
            return ResolveOutcome.POSTED if kind == _Kind.POST else ResolveOutcome.VOIDED
        if result == _Result.ALREADY_POSTED:
            return ResolveOutcome.POSTED
        if result == _Result.ALREADY_VOIDED:
            return ResolveOutcome.VOIDED
        if result in (_Result.PENDING_NOT_FOUND, _Result.PENDING_NOT_PENDING, _Result.ID_ALREADY_FAILED):
            return ResolveOutcome.NOT_LOCKED
        raise LedgerInvariantBroken(f"resolve {transfer.request_id}: {result.value}")

    def resolve_many(self, resolutions: Sequence[Resolution]) -> list[ResolveOutcome]:
        with self._db.transaction() as conn:
            return [self._resolve(conn, r.transfer, r.asset, _Kind.POST if r.post else _Kind.VOID) for r in resolutions]

    def resolve_batch(self, resolutions: Sequence[Resolution]) -> list[ResolveOutcome]:
        # One transaction: every leg's resolution lands, or (on any error) none does.
        return self.resolve_many(resolutions)

    # -- daily quotas -------------------------------------------------------

    def open_quota(self, key: QuotaKey, limit: int, version: int) -> None:
        ledger = key.asset.ledger
        with self._db.transaction() as conn:
            self._open(conn, limit_source_account_id(ledger), ledger, AccountCode.LIMIT_SOURCE, False)
            self._open(conn, _quota_account(key), ledger, QUOTA_CODE_OF[key.direction], True)
            result = self._create_event(conn, _grant(key, 0, limit, user_data_32=version))
        if result not in (_Result.OK, _Result.EXISTS, _Result.EXISTS_DIFFERENT):
            raise LedgerInvariantBroken(f"open quota {_quota_account(key)}: {result.value}")

    def quota_opening(self, key: QuotaKey) -> QuotaOpening | None:
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT user_data_32, amount FROM transfers WHERE id = ?", (str(_grant(key, 0, 0).ident),)
            ).fetchone()
        return None if row is None else QuotaOpening(version=int(row["user_data_32"]), limit=int(row["amount"]))

    def adjust_quota(self, key: QuotaKey, adjustments: Sequence[tuple[int, int]]) -> None:
        with self._db.transaction() as conn:
            self._open_cuts_account(conn, key)
            for version, delta in adjustments:
                results = self._create_chain(conn, _adjustment_chain(key, version, delta))
                # EXISTS*: this version was applied before (a retry, or another operator catching up).
                if any(r != _Result.OK for r in results) and not _ANY_EXISTS & set(results):
                    raise LedgerInvariantBroken(f"adjust quota {_quota_account(key)} v{version}: {results}")

    def quota_balances(self, keys: Sequence[QuotaKey]) -> dict[QuotaKey, QuotaBalance]:
        found = {}
        with self._db.reading() as conn:
            for key in keys:
                account = self._account(conn, _quota_account(key))
                cuts = self._account(conn, _cuts_account(key)) or {"debits_posted": 0, "credits_posted": 0}
                if account is not None:
                    found[key] = QuotaBalance(
                        granted=account["credits_posted"],
                        consumed=account["debits_posted"],
                        held=account["debits_pending"],
                        cut_asked=cuts["debits_posted"],
                        cut_taken=cuts["credits_posted"],
                    )
        return found

    def fence(self, transfer: Transfer, asset: Asset) -> FenceOutcome:
        with self._db.transaction() as conn:
            self._open_user_accounts(conn, transfer.user_id, asset)
            result = self._create(
                conn,
                lock_id(transfer.request_id),
                _Kind.SINGLE,
                debit=account_id(transfer.user_id, transfer.from_type, asset.ledger),
                credit=account_id(transfer.user_id, transfer.to_type, asset.ledger),
                amount=0,
                ledger=asset.ledger,
                code=TransferCode.FENCE,
            )
        if result in (_Result.OK, _Result.EXISTS, _Result.ID_ALREADY_FAILED):
            return FenceOutcome.FENCED
        if result == _Result.EXISTS_DIFFERENT:
            return FenceOutcome.ALREADY_LOCKED
        raise LedgerInvariantBroken(f"fence {transfer.request_id}: {result.value}")

    def state_of(self, transfer: Transfer, asset: Asset) -> LedgerState:
        ids = [lock_id, resolution_id, quota_lock_id, quota_resolution_id]
        with self._db.reading() as conn:
            lock, resolution, quota_lock, quota_resolution = (
                conn.execute("SELECT code, kind FROM transfers WHERE id = ?", (str(i(transfer.request_id)),)).fetchone()
                for i in ids
            )
        state = _state(lock, resolution)
        # The quota debit is linked to the lock and its resolution to the
        # lock's: it is absent (a lock from before limits) or in the same state.
        if quota_lock is not None and _state(quota_lock, quota_resolution) != state:
            raise LedgerInvariantBroken(f"state of {transfer.request_id}: the quota debit is not {state.value}")
        return state

    def balances(self, user_id: int, assets: list[Asset]) -> list[AccountBalance]:
        balances = []
        with self._db.reading() as conn:
            for asset in assets:
                for account_type in AccountType:
                    account = self._account(conn, account_id(user_id, account_type, asset.ledger))
                    if account is None:
                        continue
                    balances.append(
                        AccountBalance(
                            asset=asset.symbol,
                            account_type=account_type,
                            available=account["credits_posted"] - account["debits_posted"] - account["debits_pending"],
                            locked=account["debits_pending"],
                        )
                    )
        return balances

    def ping(self) -> None:
        with self._db.reading() as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._db.close()
