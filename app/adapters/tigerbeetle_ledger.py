"""The Ledger on a TigerBeetle cluster: the production balance authority.

It keeps exactly the semantics of `EmbeddedLedger` (the reference), using the
account model of `app.domain.account_model` (ids and codes are derived there).

What is written, so a transfer can be found and read from TigerBeetle alone:

Accounts (one ledger per asset, `Asset.ledger`):
    id              account_id(user_id, type, ledger) / system_account_id(ledger)
    code            AccountCode: FUNDING=1, SPOT=2, SYSTEM=9
    flags           DEBITS_MUST_NOT_EXCEED_CREDITS on user accounts (the balance
                    check); none on the asset's system account (it goes negative
                    by what was deposited)
    user_data_64    the user id (0 for the system account)

Transfers:
    id              lock_id / resolution_id / deposit_transfer_id (kind in the top byte)
    code            TransferCode: INTERNAL_TRANSFER=1, DEPOSIT=2, FENCE=3
    user_data_128   the user id
    user_data_64    the request id (the deposit id for deposits)
    user_data_32    the TransferKind: LOCK=1 (locks and fences), RESOLUTION=2, DEPOSIT=3
    timeout         0: pending transfers never expire; only a post or a void ends them

Quotas (daily limits; see docs/ledger.md):
    accounts        quota_account_id(user, ledger, direction, day), code QUOTA_*,
                    DEBITS_MUST_NOT_EXCEED_CREDITS (the limit check), user_data_64
                    the user id; limit_source_account_id(ledger), code LIMIT_SOURCE
    transfers       a lock is a LINKED chain: the move's pending transfer, then the
                    quota's pending debit (quota_lock_id, code QUOTA_USE); its post
                    or void is the same chain of the two resolutions. Grants
                    (QUOTA_GRANT, user_data_32 = the limit version the day was
                    opened with) and cuts (QUOTA_CUT, BALANCING_DEBIT) change it.

Idempotency keys (ledger KEY_CLAIMS_LEDGER, no asset's):
    accounts        key_claims_account_id(KEY_CLAIMS / KEY_CLAIMS_COUNTERPART),
                    no flags; every claim moves 0 between them
    transfers       key_claim_id(user, key), code KEY_CLAIM, amount 0;
                    user_data_128 the request body's fingerprint, user_data_64
                    the first id of the block the key names, user_data_32 KEY_CLAIM

Every value above but a claim's user data is a function of the ids, so a retry
sends the very same event and TigerBeetle answers `exists`; a second claimer
of a key sends other user data and is answered `exists_with_different_*`.

Every client call has a deadline: the TigerBeetle client itself never times
out (it retries forever while the cluster is unreachable), so calls run on a
small thread pool and the caller waits at most `timeout_seconds`. On expiry
the shared client is closed (which releases every call blocked on it), the
next call makes a new one, and the caller gets `DependencyUnavailable`: the
operation may or may not have landed, and the idempotent ids make a retry safe.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import tigerbeetle as tb
from tigerbeetle.client import InitError

from app.adapters.backend_url import BackendUrl
from app.adapters.opened_quotas import OpenedQuotas, resolve_limit
from app.domain.account_model import (
    ACCOUNT_CODE_OF,
    KEY_CLAIMS_LEDGER,
    QUOTA_CODE_OF,
    QUOTA_CUTS_CODE_OF,
    AccountCode,
    Direction,
    TransferCode,
    TransferKind,
    account_id,
    deposit_transfer_id,
    key_claim_id,
    key_claims_account_id,
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
from app.ports.errors import DependencyUnavailable, LedgerInvariantBroken
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

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_BACKEND = "ledger"
DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_WORKERS = 32

_Status = tb.CreateTransferStatus
_AccountStatus = tb.CreateAccountStatus

_TRANSFER_EXISTS_DIFFERENT = frozenset(s for s in _Status if s.name.startswith("EXISTS_WITH_DIFFERENT_"))
_ACCOUNT_EXISTS_DIFFERENT = frozenset(s for s in _AccountStatus if s.name.startswith("EXISTS_WITH_DIFFERENT_"))
_CREATED_OR_EXISTS = frozenset({_Status.CREATED, _Status.EXISTS})

# The client could not get an answer: the cluster is unreachable, or this
# client's session was evicted (e.g. too many clients) or is of the wrong release.
_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    tb.ClientClosedError,
    tb.ClientEvictedError,
    tb.ClientReleaseTooLowError,
    tb.ClientReleaseTooHighError,
    InitError,
)


def _unexpected(operation: str, subject: int, status: _Status | _AccountStatus) -> LedgerInvariantBroken:
    log.error("TigerBeetle answered %s (%d) to %s %d", status.name, int(status), operation, subject)
    return LedgerInvariantBroken(f"{operation} {subject}: TigerBeetle answered {status.name} ({int(status)})")


def _check_amount(amount: int) -> int:
    # TigerBeetle amounts are 128-bit; the client would raise on anything larger.
    if not 0 < amount < tb.AMOUNT_MAX:
        raise ValueError(f"amount {amount} is outside TigerBeetle's range (1 to 2**128 - 2)")
    return amount


def _parse_address(text: str) -> tuple[str, int]:
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"TigerBeetle address {text!r} is not host:port")
    return host, int(port_text)


def _resolve(host: str, port: int) -> str:
    """The client takes IP addresses only; names are resolved here, each time a client is made."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return f"{host}:{port}"
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise DependencyUnavailable(_BACKEND, f"cannot resolve TigerBeetle host {host!r}: {exc}") from exc
    return f"{infos[0][4][0]}:{port}"


def _quota_account(key: QuotaKey) -> int:
    return quota_account_id(key.user_id, key.asset.ledger, key.direction, key.day)


def _grant(key: QuotaKey, version: int, amount: int, opened_with: int) -> tb.Transfer:
    """Limit-source -> quota: the day's opening limit (version 0 slot) or an override's raise."""
    return tb.Transfer(
        id=quota_grant_id(key.user_id, key.asset.ledger, key.direction, key.day, version),
        debit_account_id=limit_source_account_id(key.asset.ledger),
        credit_account_id=_quota_account(key),
        amount=amount,
        user_data_128=key.user_id,
        user_data_64=version,
        user_data_32=opened_with,
        ledger=key.asset.ledger,
        code=TransferCode.QUOTA_GRANT,
        flags=tb.TransferFlags.NONE,
    )


def _quota_local(key: QuotaKey) -> tuple[int, int, Direction, int]:
    return key.user_id, key.asset.ledger, key.direction, key.day


def _cuts_account(key: QuotaKey) -> tb.Account:
    """What lowerings of the quota asked (debits) and took (credits); its debit balance is what is still owed."""
    return tb.Account(
        id=quota_cuts_account_id(*_quota_local(key)),
        ledger=key.asset.ledger,
        code=QUOTA_CUTS_CODE_OF[key.direction],
        flags=tb.AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
        user_data_64=key.user_id,
    )


def _catch_up(key: QuotaKey, ident: int, amount: int = tb.AMOUNT_MAX, version: int = 0) -> tb.Transfer:
    """Quota -> its cuts account, at most what the quota holds free and at most what is owed."""
    return tb.Transfer(
        id=ident,
        debit_account_id=_quota_account(key),
        credit_account_id=quota_cuts_account_id(*_quota_local(key)),
        amount=amount,
        user_data_128=key.user_id,
        user_data_64=version,
        user_data_32=0,
        ledger=key.asset.ledger,
        code=TransferCode.QUOTA_CUT,
        flags=tb.TransferFlags.BALANCING_DEBIT | tb.TransferFlags.BALANCING_CREDIT,
    )


def _adjustment_chain(key: QuotaKey, version: int, delta: int) -> list[tb.Transfer]:
    """A raise (grant, then pay what is owed), or a lowering (order it whole, then take what fits)."""
    if delta > 0:
        catch_up = _catch_up(key, quota_raise_catch_up_id(*_quota_local(key), version), version=version)
        return _linked([_grant(key, version, delta, 0), catch_up])
    order = tb.Transfer(
        id=quota_cut_order_id(*_quota_local(key), version),
        debit_account_id=quota_cuts_account_id(*_quota_local(key)),
        credit_account_id=limit_source_account_id(key.asset.ledger),
        amount=-delta,
        user_data_128=key.user_id,
        user_data_64=version,
        user_data_32=0,
        ledger=key.asset.ledger,
        code=TransferCode.QUOTA_CUT_ORDER,
        flags=tb.TransferFlags.NONE,
    )
    take = _catch_up(key, quota_cut_id(*_quota_local(key), version), amount=-delta, version=version)
    return _linked([order, take])


def _linked(chain: list[tb.Transfer]) -> list[tb.Transfer]:
    """One linked chain: every event but the last carries `linked`."""
    for event in chain[:-1]:
        event.flags |= tb.TransferFlags.LINKED
    return chain


def _state(request_id: int, lock: tb.Transfer | None, resolution: tb.Transfer | None) -> LedgerState:
    if lock is None:
        return LedgerState.ABSENT
    if lock.code == TransferCode.FENCE:
        return LedgerState.FENCED
    if resolution is None:
        return LedgerState.PENDING
    if resolution.flags & tb.TransferFlags.POST_PENDING_TRANSFER:
        return LedgerState.POSTED
    if resolution.flags & tb.TransferFlags.VOID_PENDING_TRANSFER:
        return LedgerState.VOIDED
    raise LedgerInvariantBroken(f"state of {request_id}: resolution has flags {resolution.flags!r}")


class _Connection:
    """One TigerBeetle client; closed at most once (closing twice is not allowed by the client)."""

    def __init__(self, client: tb.ClientSync) -> None:
        self.client = client
        self._closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.client.close()
        except Exception:  # the client is gone either way
            # close() asserts no call is in flight; calls it has just released
            # may not have unwound yet. Nothing is left to release.
            log.debug("TigerBeetle client close raised", exc_info=True)


class TigerBeetleLedger(Ledger):
    def __init__(
        self,
        addresses: Sequence[str],
        *,
        cluster_id: int = 0,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        if not addresses:
            raise ValueError("at least one TigerBeetle address is needed")
        self._addresses = [_parse_address(address) for address in addresses]
        if cluster_id < 0:
            raise ValueError("cluster_id must not be negative")
        if not (math.isfinite(timeout_seconds) and timeout_seconds > 0):
            raise ValueError("timeout_seconds must be a positive number")
        self._cluster_id = cluster_id
        self._timeout = timeout_seconds
        self._workers = workers
        # Guards the fields below; held only for a few assignments, never across
        # I/O, so no caller ever waits on it for longer than that.
        self._lock = threading.Lock()
        # One client built at a time (DNS, then the client): taken only on the
        # pool's threads, whose callers wait with their deadline.
        self._connect_lock = threading.Lock()
        # Made lazily, so a process forked after construction (gunicorn) gets its own.
        self._pid: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._connection: _Connection | None = None
        self._closed = False
        self._opened_quotas = OpenedQuotas()
        # Whether this object has made sure the key-claims accounts exist (once, ever, is enough).
        self._key_claims_opened = False

    @classmethod
    def from_url(cls, url: str) -> TigerBeetleLedger:
        """`tigerbeetle://host:port[,host:port...]?cluster_id=0[&timeout_seconds=5]`."""
        parsed = BackendUrl.parse(url, "tigerbeetle", ("cluster_id", "timeout_seconds"))
        if parsed.path not in ("", "/"):
            raise ValueError("a tigerbeetle:// URL has addresses and a query only")
        addresses = [address for address in parsed.hosts.split(",") if address.strip()]
        return cls(
            addresses,
            cluster_id=parsed.get("cluster_id", int, 0),
            timeout_seconds=parsed.get("timeout_seconds", float, DEFAULT_TIMEOUT_SECONDS),
        )

    # -- the client, with a deadline on every call --------------------------

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise DependencyUnavailable(_BACKEND, "the TigerBeetle ledger adapter is closed")
            if self._pid != os.getpid():
                # A fresh process (or a fork): what the parent made is not ours to use or close.
                self._pid = os.getpid()
                self._connection = None
                # A fork may have copied the lock held by a parent's thread that is not here.
                self._connect_lock = threading.Lock()
                self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="tigerbeetle")
            assert self._executor is not None
            return self._executor

    def _existing_connection(self) -> _Connection | None:
        with self._lock:
            if self._closed:
                raise tb.ClientClosedError()
            return self._connection

    def _current_connection(self) -> _Connection:
        """The shared client, made if there is none. Runs on the pool: a slow DNS holds no caller past its deadline."""
        connection = self._existing_connection()
        if connection is not None:
            return connection
        with self._connect_lock:
            connection = self._existing_connection()
            if connection is not None:
                return connection  # made while this thread waited
            # Slow parts (a stalled resolver, the client's start) outside `_lock`.
            addresses = ",".join(_resolve(host, port) for host, port in self._addresses)
            connection = _Connection(tb.ClientSync(cluster_id=self._cluster_id, replica_addresses=addresses))
            with self._lock:
                if not self._closed:
                    self._connection = connection
                    return connection
            connection.close()
            raise tb.ClientClosedError()

    def _discard(self, connection: _Connection) -> None:
        """Close this client (releasing every call blocked on it); the next call makes a new one."""
        with self._lock:
            if self._connection is connection:
                self._connection = None
        connection.close()

    def _call(self, operation: str, request: Callable[[tb.ClientSync], _T]) -> _T:
        used: list[_Connection] = []

        def run() -> _T:
            connection = self._current_connection()
            used.append(connection)
            return request(connection.client)

        future = self._pool().submit(run)
        try:
            return future.result(timeout=self._timeout)
        except TimeoutError:
            future.cancel()
            if used:
                self._discard(used[0])
            log.warning("TigerBeetle did not answer %s within %ss; client closed", operation, self._timeout)
            raise DependencyUnavailable(
                _BACKEND, f"TigerBeetle did not answer {operation} within {self._timeout}s"
            ) from None
        except _UNAVAILABLE_ERRORS as exc:
            if used:
                self._discard(used[0])
            raise DependencyUnavailable(_BACKEND, f"TigerBeetle {operation}: {exc or type(exc).__name__}") from exc
        except BaseException:
            # The caller is leaving (e.g. SystemExit on a worker's shutdown) while
            # the call may hang: release it, or it would keep a thread, and the
            # interpreter's exit, waiting forever.
            if not future.done():
                future.cancel()
                if used:
                    self._discard(used[0])
            raise

    def _create_transfer(self, operation: str, transfer: tb.Transfer) -> _Status:
        results = self._call(operation, lambda client: client.create_transfers([transfer]))
        if len(results) != 1:
            raise LedgerInvariantBroken(f"{operation} {transfer.id}: {len(results)} results for one transfer")
        return _Status(results[0].status)

    def _lookup_transfers(self, ids: list[int]) -> dict[int, tb.Transfer]:
        found = self._call("lookup_transfers", lambda client: client.lookup_transfers(ids))
        return {transfer.id: transfer for transfer in found}

    # -- the port ---------------------------------------------------------

    def open_accounts(self, user_id: int, asset: Asset) -> None:
        accounts = [
            tb.Account(
                id=system_account_id(asset.ledger),
                ledger=asset.ledger,
                code=AccountCode.SYSTEM,
                flags=tb.AccountFlags.NONE,
                user_data_64=0,
            )
        ]
        for account_type, code in ACCOUNT_CODE_OF.items():
            accounts.append(
                tb.Account(
                    id=account_id(user_id, account_type, asset.ledger),
                    ledger=asset.ledger,
                    code=code,
                    flags=tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
                    user_data_64=user_id,
                )
            )
        results = self._call("create_accounts", lambda client: client.create_accounts(accounts))
        if len(results) != len(accounts):
            raise LedgerInvariantBroken(f"open accounts of user {user_id}: {len(results)} results")
        for account, result in zip(accounts, results, strict=True):
            status = _AccountStatus(result.status)
            if status in (_AccountStatus.CREATED, _AccountStatus.EXISTS):
                continue
            # EXISTS_WITH_DIFFERENT_* means an id of the account model is taken by
            # something else: the model or the asset's ledger number was changed.
            raise _unexpected("create account", account.id, status)

    def deposit(self, deposit_id: int, user_id: int, asset: Asset, amount: int) -> DepositOutcome:
        _check_amount(amount)
        self.open_accounts(user_id, asset)
        status = self._create_transfer(
            "deposit",
            tb.Transfer(
                id=deposit_transfer_id(deposit_id),
                debit_account_id=system_account_id(asset.ledger),
                credit_account_id=account_id(user_id, AccountType.FUNDING, asset.ledger),
                amount=_check_amount(amount),
                user_data_128=user_id,
                user_data_64=deposit_id,
                user_data_32=TransferKind.DEPOSIT,
                ledger=asset.ledger,
                code=TransferCode.DEPOSIT,
                flags=tb.TransferFlags.NONE,
            ),
        )
        if status in _CREATED_OR_EXISTS:
            return DepositOutcome.CREDITED
        if status in _TRANSFER_EXISTS_DIFFERENT:
            return DepositOutcome.CONFLICT
        raise _unexpected("deposit", deposit_id, status)

    def _open_key_claims_accounts(self) -> None:
        accounts = [
            tb.Account(id=key_claims_account_id(code), ledger=KEY_CLAIMS_LEDGER, code=code, flags=tb.AccountFlags.NONE)
            for code in (AccountCode.KEY_CLAIMS, AccountCode.KEY_CLAIMS_COUNTERPART)
        ]
        self._create_accounts("open the key-claims accounts", accounts)
        self._key_claims_opened = True

    def claim_idempotency_key(self, user_id: int, key: str, claim: IdempotencyClaim) -> IdempotencyClaim | None:
        if not self._key_claims_opened:
            # Before the first claim: one naming a missing account would fail its id for good.
            self._open_key_claims_accounts()
        event = tb.Transfer(
            id=key_claim_id(user_id, key),
            debit_account_id=key_claims_account_id(AccountCode.KEY_CLAIMS),
            credit_account_id=key_claims_account_id(AccountCode.KEY_CLAIMS_COUNTERPART),
            amount=0,
            user_data_128=int(claim.fingerprint, 16),
            user_data_64=claim.request_id,
            user_data_32=TransferKind.KEY_CLAIM,
            timeout=0,
            ledger=KEY_CLAIMS_LEDGER,
            code=TransferCode.KEY_CLAIM,
            flags=tb.TransferFlags.NONE,
        )
        status = self._create_transfer("claim idempotency key", event)
        if status in _CREATED_OR_EXISTS:
            return None
        if status not in _TRANSFER_EXISTS_DIFFERENT:
            raise _unexpected("claim idempotency key", event.id, status)
        holder = self._lookup_transfers([event.id]).get(event.id)
        if holder is None:
            raise LedgerInvariantBroken(f"key claim {event.id}: answered {status.name}, then not found")
        return IdempotencyClaim(request_id=holder.user_data_64, fingerprint=f"{holder.user_data_128:032x}")

    def _lock_event(self, transfer: Transfer, asset: Asset, *, fence: bool, linked: bool = False) -> tb.Transfer:
        """The pending transfer (`linked` to the quota debit after it), or the zero-amount fence that takes its id."""
        flags = tb.TransferFlags.NONE if fence else tb.TransferFlags.PENDING
        return tb.Transfer(
            id=lock_id(transfer.request_id),
            debit_account_id=account_id(transfer.user_id, transfer.from_type, asset.ledger),
            credit_account_id=account_id(transfer.user_id, transfer.to_type, asset.ledger),
            amount=0 if fence else _check_amount(transfer.amount),
            user_data_128=transfer.user_id,
            user_data_64=transfer.request_id,
            user_data_32=TransferKind.LOCK,
            timeout=0,
            ledger=asset.ledger,
            code=TransferCode.FENCE if fence else TransferCode.INTERNAL_TRANSFER,
            flags=flags | tb.TransferFlags.LINKED if linked else flags,
        )

    def _create_transfers(self, operation: str, events: list[tb.Transfer]) -> list[_Status]:
        results = self._call(operation, lambda client: client.create_transfers(events))
        # The client reports one result per event, in order.
        if len(results) != len(events):
            raise LedgerInvariantBroken(f"{operation}: {len(results)} results for {len(events)} transfers")
        return [_Status(result.status) for result in results]

    @staticmethod
    def _quota_use_event(transfer: Transfer, asset: Asset, *, linked: bool = False) -> tb.Transfer:
        """The quota's pending debit that rides with a lock (the last event of its linked chain)."""
        key = QuotaKey.of_transfer(transfer, asset)
        return tb.Transfer(
            id=quota_lock_id(transfer.request_id),
            debit_account_id=_quota_account(key),
            credit_account_id=limit_source_account_id(asset.ledger),
            amount=_check_amount(transfer.amount),
            user_data_128=transfer.user_id,
            user_data_64=transfer.request_id,
            user_data_32=TransferKind.QUOTA_LOCK,
            timeout=0,
            ledger=asset.ledger,
            code=TransferCode.QUOTA_USE,
            flags=tb.TransferFlags.PENDING | tb.TransferFlags.LINKED if linked else tb.TransferFlags.PENDING,
        )

    def _open_quota_for(self, transfer: Transfer, asset: Asset, limit: LimitSource) -> None:
        quota_key = QuotaKey.of_transfer(transfer, asset)
        if quota_key not in self._opened_quotas:
            # Opened before the lock: a lock naming a missing quota account would
            # fail its id for good (id_already_failed).
            opening = resolve_limit(limit)
            self.open_quota(quota_key, opening.limit, opening.version)
            self._opened_quotas.add(quota_key)

    @staticmethod
    def _lock_outcome(move: _Status, quota: _Status) -> LockOutcome | None:
        """What a lock's (move, quota) answers mean; None if neither was judged (linked_event_failed)."""
        # A retry of a chain that landed is answered [exists, linked_event_failed]:
        # the move's answer decides, the quota's only when the move was not judged.
        if move in _CREATED_OR_EXISTS:
            return LockOutcome.LOCKED
        if move in (
            _Status.EXCEEDS_CREDITS,
            _Status.DEBIT_ACCOUNT_NOT_FOUND,
            _Status.CREDIT_ACCOUNT_NOT_FOUND,
            # An earlier attempt with this id failed for one of the reasons above;
            # TigerBeetle keeps the id failed forever.
            _Status.ID_ALREADY_FAILED,
        ):
            return LockOutcome.INSUFFICIENT_BALANCE
        if move in _TRANSFER_EXISTS_DIFFERENT:
            return LockOutcome.FENCED
        if move == _Status.LINKED_EVENT_FAILED and quota in (_Status.EXCEEDS_CREDITS, _Status.ID_ALREADY_FAILED):
            # The quota cannot hold it (now, or when this id was first tried).
            return LockOutcome.LIMIT_EXCEEDED
        return None

    def lock(self, transfer: Transfer, asset: Asset, limit: LimitSource) -> LockOutcome:
        self._open_quota_for(transfer, asset, limit)
        move_event = self._lock_event(transfer, asset, fence=False, linked=True)
        move, quota = self._create_transfers("lock", [move_event, self._quota_use_event(transfer, asset)])
        outcome = self._lock_outcome(move, quota)
        if outcome is not None:
            return outcome
        log.error("TigerBeetle answered %s, quota %s, to lock %d", move.name, quota.name, transfer.request_id)
        raise LedgerInvariantBroken(f"lock {transfer.request_id}: TigerBeetle answered {move.name}, quota {quota.name}")

    def lock_batch(self, legs: Sequence[BatchLeg]) -> BatchLockOutcome:
        for leg in legs:
            self._open_quota_for(leg.transfer, leg.asset, leg.limit)
        events: list[tb.Transfer] = []
        for leg in legs:
            events.append(self._lock_event(leg.transfer, leg.asset, fence=False, linked=True))
            events.append(self._quota_use_event(leg.transfer, leg.asset, linked=True))
        # The chain ends at the last event: it carries no `linked` flag.
        events[-1] = self._quota_use_event(legs[-1].transfer, legs[-1].asset)
        statuses = self._create_transfers("lock batch", events)
        # The first event that did not land has its own answer, all others
        # linked_event_failed; a retry of a chain that landed fails at its
        # first event, `exists`, which means the whole chain is there.
        for index in range(len(legs)):
            outcome = self._lock_outcome(statuses[2 * index], statuses[2 * index + 1])
            if outcome is not None:
                return BatchLockOutcome(outcome, None if outcome == LockOutcome.LOCKED else index)
        first = legs[0].transfer.request_id
        log.error("TigerBeetle answered %s to the batch lock of %d", [s.name for s in statuses], first)
        raise LedgerInvariantBroken(f"lock batch of {first}: TigerBeetle answered {[s.name for s in statuses]}")

    @staticmethod
    def _resolution_event(transfer: Transfer, post: bool, *, quota: bool = False, linked: bool = False) -> tb.Transfer:
        flags = tb.TransferFlags.POST_PENDING_TRANSFER if post else tb.TransferFlags.VOID_PENDING_TRANSFER
        return tb.Transfer(
            id=(quota_resolution_id if quota else resolution_id)(transfer.request_id),
            pending_id=(quota_lock_id if quota else lock_id)(transfer.request_id),
            # A post of AMOUNT_MAX posts the whole pending amount; a void takes 0.
            amount=tb.AMOUNT_MAX if post else 0,
            user_data_128=transfer.user_id,
            user_data_64=transfer.request_id,
            user_data_32=TransferKind.QUOTA_RESOLUTION if quota else TransferKind.RESOLUTION,
            timeout=0,
            flags=flags | tb.TransferFlags.LINKED if linked else flags,
        )

    def _resolution_chain(self, r: Resolution) -> list[tb.Transfer]:
        """The move's and the quota debit's resolution; after a void, pay what a lowering still owes."""
        chain = [
            self._resolution_event(r.transfer, r.post),
            self._resolution_event(r.transfer, r.post, quota=True),
        ]
        if not r.post:
            key = QuotaKey.of_transfer(r.transfer, r.asset)
            chain.append(_catch_up(key, quota_void_catch_up_id(r.transfer.request_id)))
        return _linked(chain)

    def _open_cuts_accounts(self, resolutions: Sequence[Resolution]) -> None:
        """A void's catch-up names the quota's cuts account, which must exist (or the chain fails for good)."""
        keys = {QuotaKey.of_transfer(r.transfer, r.asset) for r in resolutions if not r.post}
        if keys:
            self._create_accounts("open cuts accounts", [_cuts_account(key) for key in keys])

    def resolve_many(self, resolutions: Sequence[Resolution]) -> list[ResolveOutcome]:
        """All posts and voids in one create_transfers request: one linked chain per lock."""
        if not resolutions:
            return []
        self._open_cuts_accounts(resolutions)
        return self._resolve_chains(resolutions)

    def _resolve_chains(self, resolutions: Sequence[Resolution]) -> list[ResolveOutcome]:
        """`resolve_many` once the voids' cuts accounts exist."""
        chains = [self._resolution_chain(r) for r in resolutions]
        statuses = self._create_transfers("resolve", [event for chain in chains for event in chain])
        moves: list[_Status] = []
        alone = []
        at = 0
        for index, (r, chain) in enumerate(zip(resolutions, chains, strict=True)):
            move, quota = statuses[at], statuses[at + 1]
            at += len(chain)
            moves.append(move)
            if move != _Status.LINKED_EVENT_FAILED:
                continue
            if quota not in (_Status.PENDING_TRANSFER_NOT_FOUND, _Status.ID_ALREADY_FAILED):
                raise _unexpected("resolve quota of", r.transfer.request_id, quota)
            # A lock made before limits existed has no quota debit: resolve it alone.
            alone.append(index)
        if alone:
            singles = self._create_transfers(
                "resolve", [self._resolution_event(resolutions[i].transfer, resolutions[i].post) for i in alone]
            )
            for index, status in zip(alone, singles, strict=True):
                moves[index] = status
        return [self._resolution_outcome(r.transfer, r.post, move) for r, move in zip(resolutions, moves, strict=True)]

    def resolve_batch(self, resolutions: Sequence[Resolution]) -> list[ResolveOutcome]:
        """Every leg's resolution chain in ONE linked chain: all land or none does.

        If the chain does not land, nothing of it was applied, and the legs
        (always locked and resolved together) are all already resolved, or not
        locked: `resolve_many` then reads each leg's answer, changing nothing.
        """
        if not resolutions:
            return []
        self._open_cuts_accounts(resolutions)
        events = _linked([event for r in resolutions for event in self._resolution_chain(r)])
        events[-1].flags &= ~tb.TransferFlags.LINKED
        statuses = self._create_transfers("resolve batch", events)
        if all(status == _Status.CREATED for status in statuses):
            return [ResolveOutcome.POSTED if r.post else ResolveOutcome.VOIDED for r in resolutions]
        return self._resolve_chains(resolutions)

    def _resolution_outcome(self, transfer: Transfer, post: bool, status: _Status) -> ResolveOutcome:
        operation = "post" if post else "void"
        if status in _CREATED_OR_EXISTS:
            return ResolveOutcome.POSTED if post else ResolveOutcome.VOIDED
        if status == _Status.PENDING_TRANSFER_ALREADY_POSTED:
            return ResolveOutcome.POSTED
        if status == _Status.PENDING_TRANSFER_ALREADY_VOIDED:
            return ResolveOutcome.VOIDED
        if status in _TRANSFER_EXISTS_DIFFERENT:
            # The other resolution took the one resolution id first: report it.
            existing = self._lookup_transfers([resolution_id(transfer.request_id)]).get(
                resolution_id(transfer.request_id)
            )
            if existing is not None and existing.flags & tb.TransferFlags.POST_PENDING_TRANSFER:
                return ResolveOutcome.POSTED
            if existing is not None and existing.flags & tb.TransferFlags.VOID_PENDING_TRANSFER:
                return ResolveOutcome.VOIDED
            raise _unexpected(operation, transfer.request_id, status)
        if status in (
            _Status.PENDING_TRANSFER_NOT_FOUND,
            _Status.PENDING_TRANSFER_NOT_PENDING,  # the lock id holds a fence
            _Status.ID_ALREADY_FAILED,  # an earlier attempt found no lock
        ):
            return ResolveOutcome.NOT_LOCKED
        raise _unexpected(operation, transfer.request_id, status)

    def fence(self, transfer: Transfer, asset: Asset) -> FenceOutcome:
        # The accounts must exist for the fence to land (and so to hold).
        self.open_accounts(transfer.user_id, asset)
        status = self._create_transfer("fence", self._lock_event(transfer, asset, fence=True))
        if status in _CREATED_OR_EXISTS or status == _Status.ID_ALREADY_FAILED:
            # ID_ALREADY_FAILED: the lock failed for good, so it can never land either.
            return FenceOutcome.FENCED
        if status in _TRANSFER_EXISTS_DIFFERENT:
            return FenceOutcome.ALREADY_LOCKED
        raise _unexpected("fence", transfer.request_id, status)

    # -- daily quotas -------------------------------------------------------

    def open_quota(self, key: QuotaKey, limit: int, version: int) -> None:
        ledger = key.asset.ledger
        accounts = [
            tb.Account(
                id=limit_source_account_id(ledger),
                ledger=ledger,
                code=AccountCode.LIMIT_SOURCE,
                flags=tb.AccountFlags.NONE,
                user_data_64=0,
            ),
            tb.Account(
                id=_quota_account(key),
                ledger=ledger,
                code=QUOTA_CODE_OF[key.direction],
                flags=tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
                user_data_64=key.user_id,
            ),
        ]
        self._create_accounts("open quota", accounts)
        (grant,) = self._create_transfers("open quota", [_grant(key, 0, limit, version)])
        # EXISTS_WITH_DIFFERENT_AMOUNT: opened first with another limit (an override
        # raced the first transfer of the day); the override's adjustment follows.
        if grant not in _CREATED_OR_EXISTS and grant not in _TRANSFER_EXISTS_DIFFERENT:
            raise _unexpected("open quota", _quota_account(key), grant)

    def _create_accounts(self, operation: str, accounts: list[tb.Account]) -> None:
        """Create accounts idempotently: `exists` is fine, an account with other fields is not."""
        results = self._call("create_accounts", lambda client: client.create_accounts(accounts))
        for account, result in zip(accounts, results, strict=True):
            status = _AccountStatus(result.status)
            if status not in (_AccountStatus.CREATED, _AccountStatus.EXISTS):
                raise _unexpected(operation, account.id, status)

    def quota_opening(self, key: QuotaKey) -> QuotaOpening | None:
        ident = _grant(key, 0, 0, 0).id
        found = self._lookup_transfers([ident]).get(ident)
        return None if found is None else QuotaOpening(version=int(found.user_data_32), limit=int(found.amount))

    def adjust_quota(self, key: QuotaKey, adjustments: Sequence[tuple[int, int]]) -> None:
        if not adjustments:
            return
        self._create_accounts("open cuts account", [_cuts_account(key)])
        chains = [_adjustment_chain(key, version, delta) for version, delta in adjustments]
        statuses = self._create_transfers("adjust quota", [event for chain in chains for event in chain])
        for index, (version, _) in enumerate(adjustments):
            answers = set(statuses[2 * index : 2 * index + 2])
            # EXISTS*: this version was applied before (a retry, or another operator catching up).
            if not answers & (_CREATED_OR_EXISTS | _TRANSFER_EXISTS_DIFFERENT):
                raise LedgerInvariantBroken(f"adjust quota v{version}: TigerBeetle answered {sorted(answers)}")

    def quota_balances(self, keys: Sequence[QuotaKey]) -> dict[QuotaKey, QuotaBalance]:
        if not keys:
            return {}
        ids = [_quota_account(key) for key in keys] + [quota_cuts_account_id(*_quota_local(key)) for key in keys]
        found = {a.id: a for a in self._call("lookup_accounts", lambda client: client.lookup_accounts(ids))}
        balances = {}
        for key in keys:
            quota = found.get(_quota_account(key))
            if quota is None:
                continue
            cuts = found.get(quota_cuts_account_id(*_quota_local(key)))
            balances[key] = QuotaBalance(
                granted=quota.credits_posted,
                consumed=quota.debits_posted,
                held=quota.debits_pending,
                cut_asked=0 if cuts is None else cuts.debits_posted,
                cut_taken=0 if cuts is None else cuts.credits_posted,
            )
        return balances

    def state_of(self, transfer: Transfer, asset: Asset) -> LedgerState:
        # One lookup of all four ids: a consistent snapshot. A pending transfer
        # keeps its PENDING flag once resolved, so the resolution tells the state.
        request_id = transfer.request_id
        found = self._lookup_transfers(
            [lock_id(request_id), resolution_id(request_id), quota_lock_id(request_id), quota_resolution_id(request_id)]
        )
        state = _state(request_id, found.get(lock_id(request_id)), found.get(resolution_id(request_id)))
        quota_lock = found.get(quota_lock_id(request_id))
        # The quota debit is linked to the lock and its resolution to the
        # lock's: it is absent (a lock from before limits) or in the same state.
        if (
            quota_lock is not None
            and _state(request_id, quota_lock, found.get(quota_resolution_id(request_id))) != state
        ):
            log.error("request %d: its quota debit is not %s in TigerBeetle", request_id, state.value)
            raise LedgerInvariantBroken(f"state of {request_id}: the quota debit is not {state.value}")
        return state

    def balances(self, user_id: int, assets: list[Asset]) -> list[AccountBalance]:
        wanted = [
            (asset, account_type, account_id(user_id, account_type, asset.ledger))
            for asset in assets
            for account_type in AccountType
        ]
        if not wanted:
            return []
        ids = [ident for _, _, ident in wanted]
        found = {
            account.id: account for account in self._call("lookup_accounts", lambda client: client.lookup_accounts(ids))
        }
        balances = []
        for asset, account_type, ident in wanted:
            account = found.get(ident)
            if account is None:
                continue
            balances.append(
                AccountBalance(
                    asset=asset.symbol,
                    account_type=account_type,
                    available=account.credits_posted - account.debits_posted - account.debits_pending,
                    locked=account.debits_pending,
                )
            )
        return balances

    def ping(self) -> None:
        self._call("ping", lambda client: client.lookup_accounts([system_account_id(1)]))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            ours = self._pid == os.getpid()
            connection, self._connection = self._connection, None
            executor, self._executor = self._executor, None
        if ours and connection is not None:
            connection.close()
        if ours and executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
