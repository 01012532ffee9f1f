"""A single-process ledger on SQLite that keeps TigerBeetle's rules.

It is a development stand-in, not a second implementation to trust with
money: no overdraft on user accounts, id-idempotent creates, a pending
transfer resolved at most once, and ids that failed for a reason that
could change later stay failed (TigerBeetle's `id_already_failed`).
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Sequence

from app.adapters.sqlite_util import SqliteDatabase
from app.domain.account_model import (
    ACCOUNT_CODE_OF,
    AccountCode,
    TransferCode,
    account_id,
    deposit_transfer_id,
    lock_id,
    resolution_id,
    system_account_id,
)
from app.domain.money import Asset
from app.domain.transfer import AccountType, Transfer
from app.ports.errors import LedgerInvariantBroken
from app.ports.ledger import (
    AccountBalance,
    DepositOutcome,
    FenceOutcome,
    Ledger,
    LedgerState,
    LockOutcome,
    Resolution,
    ResolveOutcome,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, ledger INTEGER NOT NULL, code INTEGER NOT NULL,
    no_overdraft INTEGER NOT NULL,
    debits_pending TEXT NOT NULL DEFAULT '0', debits_posted TEXT NOT NULL DEFAULT '0',
    credits_pending TEXT NOT NULL DEFAULT '0', credits_posted TEXT NOT NULL DEFAULT '0'
);
CREATE TABLE IF NOT EXISTS transfers (
    id TEXT PRIMARY KEY, debit_account TEXT NOT NULL, credit_account TEXT NOT NULL,
    amount TEXT NOT NULL, pending_id TEXT, ledger INTEGER NOT NULL, code INTEGER NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS failed_ids (id TEXT PRIMARY KEY);
"""

# Amounts are stored as decimal text: SQLite integers stop at 2^63 and
# TigerBeetle's at 2^128.


class _Kind(enum.StrEnum):
    SINGLE = "single"
    PENDING = "pending"
    POST = "post"
    VOID = "void"


class _Result(enum.Enum):
    OK = "ok"
    EXISTS = "exists"
    EXISTS_DIFFERENT = "exists_with_different_fields"
    EXCEEDS_CREDITS = "exceeds_credits"
    ACCOUNT_NOT_FOUND = "account_not_found"
    PENDING_NOT_FOUND = "pending_transfer_not_found"
    PENDING_NOT_PENDING = "pending_transfer_not_pending"
    ALREADY_POSTED = "pending_transfer_already_posted"
    ALREADY_VOIDED = "pending_transfer_already_voided"
    ID_ALREADY_FAILED = "id_already_failed"


# Failures that depend on state which may change; TigerBeetle reserves the id.
_TRANSIENT = {_Result.EXCEEDS_CREDITS, _Result.ACCOUNT_NOT_FOUND, _Result.PENDING_NOT_FOUND}


class EmbeddedLedger(Ledger):
    def __init__(self, path: str) -> None:
        self._db = SqliteDatabase(path, "ledger", _SCHEMA)

    # -- the TigerBeetle-like core --------------------------------------

    def _open(self, conn: sqlite3.Connection, ident: int, ledger: int, code: int, no_overdraft: bool) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO accounts (id, ledger, code, no_overdraft) VALUES (?, ?, ?, ?)",
            (str(ident), ledger, code, int(no_overdraft)),
        )

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
                        existing["amount"] == str(amount)
                        and existing["debit_account"] == str(debit)
                        and existing["credit_account"] == str(credit)
                        and existing["ledger"] == ledger
                    )
                )
            )
            return _Result.EXISTS if same else _Result.EXISTS_DIFFERENT
        if conn.execute("SELECT 1 FROM failed_ids WHERE id = ?", (str(ident),)).fetchone():
            return _Result.ID_ALREADY_FAILED
        result = self._apply(conn, ident, kind, debit, credit, amount, ledger, code, pending_id)
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
            debit_account = self._account(conn, debit)
            if debit_account is None or self._account(conn, credit) is None:
                return _Result.ACCOUNT_NOT_FOUND
            if debit_account["no_overdraft"]:
                committed = debit_account["debits_pending"] + debit_account["debits_posted"]
                if committed + amount > debit_account["credits_posted"]:
                    return _Result.EXCEEDS_CREDITS
            prefix = "pending" if kind == _Kind.PENDING else "posted"
            self._add(conn, debit, f"debits_{prefix}", amount)
            self._add(conn, credit, f"credits_{prefix}", amount)
        conn.execute(
            "INSERT INTO transfers (id, debit_account, credit_account, amount, pending_id, ledger, code, kind)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(ident),
                str(debit),
                str(credit),
                str(amount),
                str(pending_id) if pending_id else None,
                ledger,
                code,
                kind.value,
            ),
        )
        return _Result.OK

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

    def lock(self, transfer: Transfer, asset: Asset) -> LockOutcome:
        with self._db.transaction() as conn:
            result = self._create(
                conn,
                lock_id(transfer.request_id),
                _Kind.PENDING,
                debit=account_id(transfer.user_id, transfer.from_type, asset.ledger),
                credit=account_id(transfer.user_id, transfer.to_type, asset.ledger),
                amount=transfer.amount,
                ledger=asset.ledger,
                code=TransferCode.INTERNAL_TRANSFER,
            )
        if result in (_Result.OK, _Result.EXISTS):
            return LockOutcome.LOCKED
        if result in (_Result.EXCEEDS_CREDITS, _Result.ACCOUNT_NOT_FOUND, _Result.ID_ALREADY_FAILED):
            return LockOutcome.INSUFFICIENT_BALANCE
        if result == _Result.EXISTS_DIFFERENT:
            return LockOutcome.FENCED
        raise LedgerInvariantBroken(f"lock {transfer.request_id}: {result.value}")

    def _resolve(self, transfer: Transfer, kind: _Kind) -> ResolveOutcome:
        with self._db.transaction() as conn:
            result = self._create(
                conn, resolution_id(transfer.request_id), kind, pending_id=lock_id(transfer.request_id)
            )
            if result == _Result.EXISTS_DIFFERENT:
                row = conn.execute(
                    "SELECT kind FROM transfers WHERE id = ?", (str(resolution_id(transfer.request_id)),)
                ).fetchone()
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
        return [self._resolve(r.transfer, _Kind.POST if r.post else _Kind.VOID) for r in resolutions]

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
        with self._db.reading() as conn:
            lock = conn.execute(
                "SELECT code FROM transfers WHERE id = ?", (str(lock_id(transfer.request_id)),)
            ).fetchone()
            if lock is None:
                return LedgerState.ABSENT
            if lock["code"] == TransferCode.FENCE:
                return LedgerState.FENCED
            resolution = conn.execute(
                "SELECT kind FROM transfers WHERE id = ?", (str(resolution_id(transfer.request_id)),)
            ).fetchone()
        if resolution is None:
            return LedgerState.PENDING
        return LedgerState.POSTED if resolution["kind"] == _Kind.POST.value else LedgerState.VOIDED

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
