"""Status events: what the `internal_transfer.events` stream says about a transfer.

Pure data and its wire form (docs/messages.md, "Status events"). Every
status change, every stuck-transfer warning and every operator action that
changes no status becomes one event. Ids and amounts travel as decimal
strings, like every message of this service.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from app.domain.ids import id_field
from app.domain.transfer import AuditActor, FailureReason, Status, Transfer, precedence

EVENT_SCHEMA_VERSION = 1
# Event ids are derived from what the event says (uuid5), so writing the same
# event twice (a retried write, a re-emitted warning) gives the same id.
_EVENT_NAMESPACE = uuid.UUID("6f0c3a3e-9a57-4f43-a0f4-6d1f54a3b0e1")


class EventKind(enum.StrEnum):
    STATUS_CHANGED = "status_changed"
    # A failure whose cause was unknown (a bare VOIDED) gets its cause: failed -> failed.
    FAILURE_EXPLAINED = "failure_explained"
    # Still not settled after 30 minutes (warning) or 2 hours (critical); status unchanged.
    STUCK_WARNING = "stuck_warning"
    STUCK_CRITICAL = "stuck_critical"
    # An operator acted without changing the status (a re-send to the engine).
    OPERATOR_ACTION = "operator_action"


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """UTC, microseconds, with a `Z`: one spelling for every event."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class StatusEvent:
    kind: EventKind
    request_id: int
    user_id: int
    asset: str
    amount: int
    from_account_type: str
    to_account_type: str
    from_status: Status | None
    to_status: Status
    actor: str
    reason: str
    failure_reason: FailureReason | None
    at: datetime

    @property
    def event_id(self) -> str:
        canonical = "|".join(
            (
                self.kind.value,
                str(self.request_id),
                self.from_status.value if self.from_status else "",
                self.to_status.value,
                self.failure_reason.value if self.failure_reason else "",
                self.actor,
                rfc3339(self.at),
            )
        )
        return str(uuid.uuid5(_EVENT_NAMESPACE, canonical))

    @property
    def dedupe_key(self) -> tuple[int, str, str, str]:
        """What a consumer deduplicates by: (request_id, to_status, failure_reason), plus the kind.

        The cause is part of it: two actors can record `failed` with
        different causes (the scanner's fence racing a refused lock), and a
        consumer that dropped the second as a duplicate could keep the one
        the store did not.
        """
        return (self.request_id, self.kind.value, self.to_status.value, self.failure_reason or "")

    @property
    def precedence(self) -> int:
        """Of two events of one transfer, the higher is its state: the order the store keeps statuses by."""
        return precedence(self.to_status, self.failure_reason)

    # -- constructors ------------------------------------------------------------

    @classmethod
    def status_changed(cls, before: Transfer | None, after: Transfer, actor: AuditActor, reason: str) -> StatusEvent:
        same = before is not None and before.status == after.status
        return cls(
            kind=EventKind.FAILURE_EXPLAINED if same else EventKind.STATUS_CHANGED,
            request_id=after.request_id,
            user_id=after.user_id,
            asset=after.asset,
            amount=after.amount,
            from_account_type=after.from_type.value,
            to_account_type=after.to_type.value,
            from_status=before.status if before is not None else None,
            to_status=after.status,
            actor=str(actor),
            reason=reason,
            failure_reason=after.failure_reason,
            at=after.updated_at,
        )

    @classmethod
    def about(cls, kind: EventKind, transfer: Transfer, actor: AuditActor, reason: str, at: datetime) -> StatusEvent:
        """An event that changes no status: a warning, an operator's re-send."""
        return cls(
            kind=kind,
            request_id=transfer.request_id,
            user_id=transfer.user_id,
            asset=transfer.asset,
            amount=transfer.amount,
            from_account_type=transfer.from_type.value,
            to_account_type=transfer.to_type.value,
            from_status=transfer.status,
            to_status=transfer.status,
            actor=str(actor),
            reason=reason,
            failure_reason=transfer.failure_reason,
            at=at,
        )

    # -- wire form -------------------------------------------------------------------

    def to_message(self) -> dict[str, object]:
        return {
            "schema_version": EVENT_SCHEMA_VERSION,
            "event_id": self.event_id,
            "kind": self.kind.value,
            "request_id": str(self.request_id),
            "user_id": str(self.user_id),
            "asset": self.asset,
            "amount": str(self.amount),
            "from_account_type": self.from_account_type,
            "to_account_type": self.to_account_type,
            "from_status": self.from_status.value if self.from_status else None,
            "to_status": self.to_status.value,
            "actor": self.actor,
            "reason": self.reason,
            "failure_reason": self.failure_reason.value if self.failure_reason else None,
            "at": rfc3339(self.at),
        }

    @classmethod
    def from_message(cls, message: dict[str, object]) -> StatusEvent:
        if message.get("schema_version") != EVENT_SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {message.get('schema_version')!r}")
        amount = message.get("amount")
        if not isinstance(amount, str) or not amount.isdigit():
            raise ValueError("amount must be a decimal string of minor units")
        from_status = message.get("from_status")
        failure_reason = message.get("failure_reason")
        at = message.get("at")
        if not isinstance(at, str):
            raise ValueError("at must be an RFC 3339 string")
        return cls(
            kind=EventKind(str(message.get("kind"))),
            request_id=id_field(message, "request_id"),
            user_id=id_field(message, "user_id"),
            asset=str(message["asset"]),
            amount=int(amount),
            from_account_type=str(message["from_account_type"]),
            to_account_type=str(message["to_account_type"]),
            from_status=Status(str(from_status)) if from_status is not None else None,
            to_status=Status(str(message.get("to_status"))),
            actor=str(message["actor"]),
            reason=str(message["reason"]),
            failure_reason=FailureReason(str(failure_reason)) if failure_reason is not None else None,
            at=_utc(datetime.fromisoformat(at.replace("Z", "+00:00"))),
        )
