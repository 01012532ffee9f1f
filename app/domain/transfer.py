"""The internal transfer and its state machine."""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import ClassVar

from app.domain.errors import IllegalTransition, NotPending, ValidationFailed


class AccountType(enum.StrEnum):
    FUNDING = "funding"
    SPOT = "spot"


class Status(enum.StrEnum):
    REQUESTING = "requesting"
    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (Status.SUCCESS, Status.FAILED)

    @property
    def rank(self) -> int:
        """How far along a transfer is: 0, 1, then 2 for either end."""
        return _RANKS[self]


_RANKS = {Status.REQUESTING: 0, Status.PENDING: 1, Status.SUCCESS: 2, Status.FAILED: 2}


# Statuses only ever move forward.
LEGAL_TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.REQUESTING: frozenset({Status.PENDING, Status.FAILED}),
    Status.PENDING: frozenset({Status.SUCCESS, Status.FAILED}),
    Status.SUCCESS: frozenset(),
    Status.FAILED: frozenset(),
}


class FailureReason(enum.StrEnum):
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    DAILY_LIMIT_EXCEEDED = "DAILY_LIMIT_EXCEEDED"
    REJECTED_BY_ENGINE = "REJECTED_BY_ENGINE"
    NOT_LOCKED = "NOT_LOCKED"
    VOIDED_BY_OPERATOR = "VOIDED_BY_OPERATOR"
    # Voided in the ledger by an actor that died before recording why.
    VOIDED = "VOIDED"
    # Another leg of its batch could not lock (that leg names the cause): all or nothing.
    BATCH_FAILED = "BATCH_FAILED"


# Which cause a failed transfer keeps when two actors record different ones,
# weakest first: a stored cause is never replaced by one listed before it.
# Every cause has its own place, so no two failures tie (a tie would leave it
# to the store: Cassandra compares the words cell by cell, SQLite keeps
# whichever landed first). `precedence` below applies it, on every store.
FAILURE_ORDER: tuple[FailureReason, ...] = (
    # The scanner's placeholder for a void nobody explained: any cause explains it.
    FailureReason.VOIDED,
    # The scanner's fence: it finds no lock because the lock was refused, or
    # never tried. A refusal racing it was answered 422, and a replay of its
    # Idempotency-Key answers from the record: the refusal must stay, or the
    # 422 would replay as 202.
    FailureReason.NOT_LOCKED,
    # Two voids of one lock, which the ledger voids once: an operator's void
    # racing the engine's rejection. The operator's, a named person's
    # decision, is what the record keeps.
    FailureReason.REJECTED_BY_ENGINE,
    FailureReason.VOIDED_BY_OPERATOR,
    # The refusals, answered 422, strongest: nothing is locked, and the
    # ledger never locks an id it refused (id_already_failed), so of the
    # causes above they meet only the scanner's; whatever else is written,
    # the 422 stays (as it does over a success). BATCH_FAILED yields to a
    # leg's own refusal (two attempts of one batch refused at different
    # legs), so the batch's replay still names a refused leg.
    FailureReason.BATCH_FAILED,
    FailureReason.DAILY_LIMIT_EXCEEDED,
    FailureReason.INSUFFICIENT_BALANCE,
)


class Actor(enum.StrEnum):
    API = "api"
    SETTLEMENT = "settlement"
    SCANNER = "scanner"
    OPERATOR = "operator"


class Outcome(enum.StrEnum):
    """The engine's answer to a request, as the results topic spells it."""

    CONFIRMED = "confirmed"
    REJECTED = "rejected"


@dataclass(frozen=True)
class AuditActor:
    """Who acted, for the audit trail: one of the service's own actors, or a named operator.

    Stored and shown as its wire form, `api`, `scanner`, ... or `operator:<name>`.
    Over HTTP an operator is named by its token's subject (`operator:7`). A CLI
    action names the operator as typed, with the OS user and host the command
    ran as: `operator:alice (cli: bob@ops-1)`. Only `cli` makes that form: a
    stated name may not hold parentheses, so no other path can pass for the CLI.
    """

    kind: Actor
    name: str = ""

    MAX_NAME_LENGTH: ClassVar[int] = 64
    # A login name in POSIX's portable characters, or `#<uid>` when there is none to record.
    _OS_USER: ClassVar[str] = r"[A-Za-z0-9._][A-Za-z0-9._$-]{0,63}|#[0-9]{1,10}"
    _HOST: ClassVar[str] = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,252}"
    _CLI_FORM: ClassVar[re.Pattern[str]] = re.compile(
        rf"(?P<stated>[^()]+) \(cli: (?P<os_user>{_OS_USER})@(?P<host>{_HOST})\)"
    )

    class _CliName(str):
        """A name `cli` built: the only kind `operator` accepts in the CLI's form."""

        __slots__ = ()

    def __post_init__(self) -> None:
        # Only operators are people; an operator entry without a name would lose who asked.
        if (self.kind == Actor.OPERATOR) != bool(self.name):
            raise ValueError("an operator actor needs a name, and only an operator has one")

    @classmethod
    def operator(cls, name: str) -> AuditActor:
        """An operator by name: over HTTP its token's subject, from the CLI the name `cli` built."""
        if not isinstance(name, cls._CliName):
            cls._check_stated_name(name)
        return cls(Actor.OPERATOR, name)

    @classmethod
    def cli(cls, stated: str, os_user: str, host: str) -> AuditActor:
        """An operator at the CLI: the name given, and the OS user and host the command runs as."""
        stated = stated.strip()
        cls._check_stated_name(stated)
        if not re.fullmatch(cls._OS_USER, os_user):
            raise ValidationFailed("the OS user cannot be recorded in the audit", field="os_user")
        if not re.fullmatch(cls._HOST, host):
            raise ValidationFailed("this machine's host name cannot be recorded in the audit", field="host")
        return cls(Actor.OPERATOR, cls._CliName(f"{stated} (cli: {os_user}@{host})"))

    @classmethod
    def recordable_os_user(cls, login: str | None, uid: int) -> str:
        """The login name if the audit can keep it as it is, else the uid as `#<uid>`."""
        return login if login is not None and re.fullmatch(cls._OS_USER, login) else f"#{uid}"

    @classmethod
    def _check_stated_name(cls, name: str) -> None:
        # Printable excludes control, format (bidi) and line-separator characters;
        # the parentheses are the CLI suffix's own.
        if (
            not name
            or name != name.strip()
            or len(name) > cls.MAX_NAME_LENGTH
            or not name.isprintable()
            or "(" in name
            or ")" in name
        ):
            raise ValidationFailed(
                f"an operator's name is 1 to {cls.MAX_NAME_LENGTH} printable characters,"
                " without parentheses or surrounding spaces",
                field="operator",
            )

    @classmethod
    def parse(cls, text: str) -> AuditActor:
        # Lenient: rows written before names were checked are still read, as written.
        kind, sep, name = text.partition(":")
        return cls(Actor(kind), name if sep else "")

    @property
    def is_operator(self) -> bool:
        return self.kind == Actor.OPERATOR

    @property
    def stated_name(self) -> str:
        """The operator's name as given: the token's subject, or what was typed at the CLI."""
        found = self._cli_form()
        return found["stated"] if found else self.name

    @property
    def cli_origin(self) -> tuple[str, str] | None:
        """The OS user and host of a CLI action; None for any other actor."""
        found = self._cli_form()
        return (found["os_user"], found["host"]) if found else None

    def _cli_form(self) -> re.Match[str] | None:
        return self._CLI_FORM.fullmatch(self.name) if self.is_operator else None

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}" if self.name else self.kind.value


API = AuditActor(Actor.API)
SETTLEMENT = AuditActor(Actor.SETTLEMENT)
SCANNER = AuditActor(Actor.SCANNER)


def check_transition(current: Status, target: Status) -> None:
    if target not in LEGAL_TRANSITIONS[current]:
        raise IllegalTransition(
            f"a transfer cannot move from {current.value} to {target.value}",
            current=current.value,
            target=target.value,
        )


class OperatorAction(enum.StrEnum):
    VOID = "voided"
    FORCE_POST = "posted"
    RESEND = "re-sent"


def check_operator_action(action: OperatorAction, status: Status, cause_unknown: bool) -> None:
    """NOT_PENDING unless an operator may take `action` on a transfer in `status` now.

    Every action is for a pending transfer. A void may also explain a void
    the scanner recorded without its cause (`Transfer.cause_unknown`): the
    void stands, and who asked and why join it.
    """
    if status == Status.PENDING or (action == OperatorAction.VOID and cause_unknown):
        return
    raise NotPending(f"only a pending transfer can be {action.value}; this one is {status.value}")


@dataclass(frozen=True)
class TransferCommand:
    """A validated request to move `amount` units of `asset` between a user's accounts."""

    user_id: int
    asset: str
    from_type: AccountType
    to_type: AccountType
    amount: int

    def __post_init__(self) -> None:
        if self.from_type == self.to_type:
            raise ValidationFailed("from_account and to_account must differ", code="SAME_ACCOUNT")
        if self.amount <= 0:
            raise ValidationFailed("amount must be greater than zero", code="INVALID_AMOUNT")

    def fingerprint(self) -> str:
        """A digest of what the client asked for, to tell a replay from a key reuse."""
        return fingerprint_of([self.user_id, self.asset, self.from_type.value, self.to_type.value, str(self.amount)])


def fingerprint_of(canonical: list[object]) -> str:
    """128 bits of SHA-256, in hex: a key's claim keeps it in the ledger's 128-bit user data."""
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Transfer:
    request_id: int
    user_id: int
    asset: str
    from_type: AccountType
    to_type: AccountType
    amount: int
    status: Status
    created_at: datetime
    updated_at: datetime
    failure_reason: FailureReason | None = None
    idempotency_key: str | None = None
    fingerprint: str = field(default="", compare=False)
    # The batch this transfer is a leg of (app/domain/batch.py); None for a single transfer.
    batch_id: int | None = None

    @classmethod
    def new(
        cls,
        request_id: int,
        command: TransferCommand,
        now: datetime,
        idempotency_key: str | None = None,
        batch_id: int | None = None,
    ) -> Transfer:
        return cls(
            request_id=request_id,
            user_id=command.user_id,
            asset=command.asset,
            from_type=command.from_type,
            to_type=command.to_type,
            amount=command.amount,
            status=Status.REQUESTING,
            created_at=now,
            updated_at=now,
            idempotency_key=idempotency_key,
            fingerprint=command.fingerprint(),
            batch_id=batch_id,
        )

    def moved_to(self, target: Status, now: datetime, failure_reason: FailureReason | None = None) -> Transfer:
        check_transition(self.status, target)
        if target == Status.FAILED and not failure_reason:
            raise ValueError("a failed transfer needs a failure reason")
        return replace(self, status=target, updated_at=now, failure_reason=failure_reason)

    @property
    def cause_unknown(self) -> bool:
        """Failed because its lock was voided, by someone who died before saying why."""
        return self.status == Status.FAILED and self.failure_reason == FailureReason.VOIDED

    def explained(self, failure_reason: FailureReason, now: datetime) -> Transfer:
        """The same failure with its cause filled in, once whoever voided it says why.

        The only change a terminal transfer allows: the scanner records a bare
        VOIDED when it finds a void nobody recorded, and the engine's rejection
        or the operator's void that caused it must still be able to say so.
        """
        if not self.cause_unknown or failure_reason == FailureReason.VOIDED:
            raise IllegalTransition(
                "only a void of unknown cause can be explained",
                current=self.status.value,
                target=self.status.value,
            )
        return replace(self, updated_at=now, failure_reason=failure_reason)


def precedence(status: Status, failure_reason: FailureReason | None) -> int:
    """Orders what may be stored about a transfer: a write never replaces one of higher precedence.

    Statuses by how far along they are; among failures, by FAILURE_ORDER (a
    failure with no cause recorded ranks as the bare VOIDED). Below 10 apart
    per status rank, and under 1000 in all (Cassandra adds it to a write
    timestamp in microseconds: app/adapters/cassandra_store.py).
    """
    if status != Status.FAILED:
        return status.rank * 10
    return status.rank * 10 + FAILURE_ORDER.index(failure_reason or FailureReason.VOIDED)


@dataclass(frozen=True)
class AuditEntry:
    """One status change: who moved it, when, from where to where, and why."""

    request_id: int
    at: datetime
    actor: AuditActor
    from_status: Status | None
    to_status: Status
    reason: str
