"""Submit, query, settle and reject internal transfers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.domain.assets import AssetCatalog
from app.domain.errors import DomainError, ValidationFailed
from app.domain.ids import SnowflakeGenerator, timestamp_ms_of
from app.domain.transfer import (
    AccountType,
    Actor,
    FailureReason,
    Status,
    Transfer,
    TransferCommand,
)
from app.ports.bus import EngineRequest, EngineResult, PoisonMessage, TransferBus
from app.ports.errors import DependencyUnavailable
from app.ports.ledger import Ledger, LedgerState, LockOutcome, ResolveOutcome
from app.ports.store import HistoryPage, IdempotencyClaim, TransferStore
from app.services.alerts import raise_alert
from app.services.crash_points import crash_point

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


_MAX_ID_CLASHES = 8
_RESUME_WINDOW = timedelta(hours=1)


def utc_now() -> datetime:
    return datetime.now(UTC)


class InsufficientBalance(DomainError):
    code = "INSUFFICIENT_BALANCE"


class IdempotencyKeyReused(DomainError):
    code = "IDEMPOTENCY_KEY_REUSED"


class NotFound(DomainError):
    code = "NOT_FOUND"


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"


@dataclass(frozen=True)
class SubmitResult:
    transfer: Transfer
    replayed: bool


def build_command(
    catalog: AssetCatalog,
    user_id: int,
    from_account: Mapping[str, object],
    to_account: Mapping[str, object],
    amount: object,
) -> TransferCommand:
    """Turn the request's shape into a command, checking ownership and the asset."""
    for side in (from_account, to_account):
        owner = side.get("user_id")
        if owner is not None and owner != user_id:
            raise PermissionDenied("you can only move funds between your own accounts")
    account_types = []
    for side in (from_account, to_account):
        try:
            account_types.append(AccountType(side.get("account_type")))
        except ValueError:
            raise ValidationFailed("account_type must be 'funding' or 'spot'", code="INVALID_ACCOUNT_TYPE") from None
    asset = catalog.get(from_account.get("asset"))
    if to_account.get("asset") != from_account.get("asset"):
        raise ValidationFailed("both accounts must hold the same asset", code="ASSET_MISMATCH")
    if account_types[0] == account_types[1]:
        raise ValidationFailed("from_account and to_account must differ", code="SAME_ACCOUNT")
    return TransferCommand(
        user_id=user_id,
        asset=asset.symbol,
        from_type=account_types[0],
        to_type=account_types[1],
        amount=asset.parse(amount),
    )


class TransferService:
    def __init__(
        self,
        store: TransferStore,
        ledger: Ledger,
        bus: TransferBus,
        catalog: AssetCatalog,
        ids: SnowflakeGenerator,
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.bus = bus
        self.catalog = catalog
        self.ids = ids
        self.clock = clock

    # -- submit -------------------------------------------------------------

    def submit(self, command: TransferCommand, idempotency_key: str | None = None) -> SubmitResult:
        if idempotency_key is None:
            return SubmitResult(self._lock_and_send(self._insert_new(command, None)), replayed=False)
        user_id, key = command.user_id, idempotency_key
        claim = IdempotencyClaim(request_id=self.ids.next_id(), fingerprint=command.fingerprint())
        holder = self.store.claim_idempotency_key(user_id, key, claim)
        replayed = holder is not None
        for _ in range(_MAX_ID_CLASHES):
            if holder is not None:
                if holder.fingerprint != claim.fingerprint:
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was already used with a different request",
                        request_id=str(holder.request_id),
                    )
                existing = self.store.get(holder.request_id)
                if existing is not None and self._made_by(existing, user_id, key):
                    return SubmitResult(existing, replayed=True)
                if existing is None and not self._too_old_to_resume(holder.request_id):
                    # The key is claimed but its transfer is not recorded: the
                    # first attempt died in between (nothing was locked: the
                    # lock needs the record) or is still running. Carrying on
                    # with the id the key names is safe: every step is idempotent.
                    claim, holder = holder, None
                    continue
                # The id belongs to another transfer (two processes drew the
                # same Snowflake), or is too old for the scanner to find: move
                # the key to a fresh id.
                fresh = IdempotencyClaim(request_id=self.ids.next_id(), fingerprint=claim.fingerprint)
                holder = self.store.reassign_idempotency_key(user_id, key, holder.request_id, fresh)
                claim = fresh
                continue
            transfer = Transfer.new(claim.request_id, command, self.clock(), key)
            if self.store.insert(transfer):
                crash_point("after_store_insert")
                return SubmitResult(self._lock_and_send(transfer), replayed=replayed)
            existing = self._get_existing(claim.request_id)
            if self._made_by(existing, user_id, key):
                # A concurrent duplicate recorded it first; finish it alongside.
                if existing.status != Status.REQUESTING:
                    return SubmitResult(existing, replayed=True)
                return SubmitResult(self._lock_and_send(existing), replayed=True)
            holder = IdempotencyClaim(request_id=claim.request_id, fingerprint=claim.fingerprint)
        raise RuntimeError(f"could not find a free request id for key {key!r}")

    @staticmethod
    def _made_by(transfer: Transfer, user_id: int, key: str) -> bool:
        return transfer.user_id == user_id and transfer.idempotency_key == key

    def _too_old_to_resume(self, request_id: int) -> bool:
        # The scanner reads the open set by the day a request id was issued;
        # an unrecorded id older than this gets a fresh one instead.
        issued = datetime.fromtimestamp(timestamp_ms_of(request_id) / 1000, UTC)
        return self.clock() - issued > _RESUME_WINDOW

    def _insert_new(self, command: TransferCommand, idempotency_key: str | None) -> Transfer:
        while True:
            transfer = Transfer.new(self.ids.next_id(), command, self.clock(), idempotency_key)
            if self.store.insert(transfer):
                crash_point("after_store_insert")
                return transfer
            log.warning("request id %s clashed; drawing another", transfer.request_id)

    def _lock_and_send(self, transfer: Transfer) -> Transfer:
        asset = self.catalog.get(transfer.asset)
        try:
            outcome = self.ledger.lock(transfer, asset)
        except DependencyUnavailable as exc:
            exc.request_id = transfer.request_id
            raise
        crash_point("after_lock")
        if outcome == LockOutcome.INSUFFICIENT_BALANCE:
            self._finish(
                transfer,
                Status.FAILED,
                Actor.API,
                "lock refused: insufficient balance",
                FailureReason.INSUFFICIENT_BALANCE.value,
            )
            raise InsufficientBalance(
                "the source account does not hold enough available funds",
                request_id=str(transfer.request_id),
            )
        if outcome == LockOutcome.FENCED:
            # The scanner gave up on this request before our lock landed.
            return self._get_existing(transfer.request_id)
        try:
            pending = self.store.transition(
                transfer, Status.PENDING, actor=Actor.API.value, reason="funds locked", now=self.clock()
            )
            if pending is None:
                # The scanner moved it first; it also (re)sends it to the engine.
                return self._get_existing(transfer.request_id)
            crash_point("after_store_update")
            self.send_to_engine(pending)
        except DependencyUnavailable as exc:
            exc.request_id = transfer.request_id
            raise
        return pending

    def send_to_engine(self, transfer: Transfer) -> None:
        crash_point("before_publish")
        self.bus.publish_request(
            EngineRequest(
                request_id=transfer.request_id,
                user_id=transfer.user_id,
                asset=transfer.asset,
                from_account_type=transfer.from_type.value,
                to_account_type=transfer.to_type.value,
                amount_units=transfer.amount,
            )
        )
        crash_point("after_publish")

    # -- queries ------------------------------------------------------------

    def _get_existing(self, request_id: int) -> Transfer:
        transfer = self.store.get(request_id)
        if transfer is None:
            raise RuntimeError(f"transfer {request_id} vanished from the store")
        return transfer

    def get_for_user(self, user_id: int, request_id: int) -> Transfer:
        transfer = self.store.get(request_id)
        # Another user's transfer looks exactly like a missing one.
        if transfer is None or transfer.user_id != user_id:
            raise NotFound("no such transfer")
        return transfer

    def history(
        self,
        user_id: int,
        limit: int,
        cursor: str | None,
        status: Status | None,
        asset: str | None,
    ) -> HistoryPage:
        if asset is not None:
            asset = self.catalog.get(asset).symbol
        return self.store.history(user_id, limit, cursor, status, asset)

    # -- results from the engine ----------------------------------------------

    def apply_results(self, results: Sequence[EngineResult]) -> None:
        """Apply a batch of engine results; raise if any of them could not be applied."""
        for result in results:
            self.apply_result(result)

    def apply_result(self, result: EngineResult) -> None:
        transfer = self.store.get(result.request_id)
        if transfer is None:
            raise PoisonMessage(f"result for unknown request {result.request_id}")
        if result.outcome == "confirmed":
            self.settle(transfer, Actor.SETTLEMENT, "confirmed by the engine")
        else:
            self.reject(
                transfer,
                Actor.SETTLEMENT,
                f"rejected by the engine: {result.reason or 'no reason'}",
                FailureReason.REJECTED_BY_ENGINE.value,
            )

    # `actor` is who acts, for the audit trail: an Actor, or "operator:<name>".

    def settle(self, transfer: Transfer, actor: str, reason: str) -> Transfer:
        """Post the pending lock and record `success`. Safe to repeat."""
        return self._resolve(transfer, actor, reason, post=True, failure_reason=None)

    def reject(self, transfer: Transfer, actor: str, reason: str, failure_reason: str) -> Transfer:
        """Void the pending lock, releasing the funds, and record `failed`. Safe to repeat."""
        return self._resolve(transfer, actor, reason, post=False, failure_reason=failure_reason)

    def _resolve(
        self, transfer: Transfer, actor: str, reason: str, *, post: bool, failure_reason: str | None
    ) -> Transfer:
        if transfer.status.is_terminal:
            wanted = Status.SUCCESS if post else Status.FAILED
            if transfer.status != wanted:
                raise_alert(
                    "settlement_conflict",
                    "critical",
                    request_id=transfer.request_id,
                    stored=transfer.status.value,
                    asked=wanted.value,
                    actor=str(actor),
                )
            return transfer
        asset = self.catalog.get(transfer.asset)
        if transfer.status == Status.REQUESTING and self.ledger.state_of(transfer, asset) in (
            LedgerState.ABSENT,
            LedgerState.FENCED,
        ):
            # Nothing is sent to the engine before its lock exists. Resolving
            # a lock that is not there would burn the resolution id for good.
            raise PoisonMessage(f"result for request {transfer.request_id}, which was never locked")
        resolve = self.ledger.post if post else self.ledger.void
        outcome = resolve(transfer, asset)
        crash_point("after_ledger_resolve")
        if outcome == ResolveOutcome.POSTED:
            if not post:
                raise_alert("void_lost_to_post", "critical", request_id=transfer.request_id, actor=str(actor))
            return self._finish(transfer, Status.SUCCESS, actor, reason if post else "already posted in the ledger")
        if outcome == ResolveOutcome.VOIDED:
            if post:
                raise_alert("post_lost_to_void", "critical", request_id=transfer.request_id, actor=str(actor))
            return self._finish(
                transfer,
                Status.FAILED,
                actor,
                reason if not post else "already voided in the ledger",
                failure_reason or FailureReason.VOIDED_BY_OPERATOR.value,
            )
        raise_alert("pending_without_lock", "critical", request_id=transfer.request_id, actor=str(actor))
        return transfer

    def _finish(
        self, transfer: Transfer, target: Status, actor: str, reason: str, failure_reason: str | None = None
    ) -> Transfer:
        """Record a terminal status the ledger already decided, whoever races us."""
        current = transfer
        while not current.status.is_terminal:
            if target == Status.SUCCESS and current.status == Status.REQUESTING:
                step = Status.PENDING
            else:
                step = target
            crash_point("before_final_store_update")
            moved = self.store.transition(
                current,
                step,
                actor=str(actor),
                reason=reason,
                now=self.clock(),
                failure_reason=failure_reason if step == Status.FAILED else None,
            )
            current = moved if moved is not None else self._get_existing(transfer.request_id)
        if current.status != target:
            raise_alert(
                "status_disagrees_with_ledger",
                "critical",
                request_id=transfer.request_id,
                stored=current.status.value,
                ledger=target.value,
            )
        return current
