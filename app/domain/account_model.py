"""How transfers map onto ledger accounts and transfer ids (TigerBeetle's model).

Both ledger adapters use this, so the embedded ledger and TigerBeetle hold
the same ids and codes, and operators can read TigerBeetle alone.

* One ledger per asset (`Asset.ledger`).
* Account id = user_id << 64 | ledger << 16 | account code. The system
  account of an asset has user_id 0. Ids are never 0 because codes are not.
* Transfer ids carry a kind in their top byte, so ids derived from the same
  request id can never collide with each other or with a deposit's:
  lock (the pending transfer), resolution (its post *or* its void: one id, so
  whichever lands first wins), and deposit.
"""

from __future__ import annotations

import enum

from app.domain.transfer import AccountType

_KIND_SHIFT = 120
_MAX_LOCAL_ID = (1 << 64) - 1


class AccountCode(enum.IntEnum):
    FUNDING = 1
    SPOT = 2
    SYSTEM = 9


class TransferCode(enum.IntEnum):
    INTERNAL_TRANSFER = 1
    DEPOSIT = 2
    # A zero-amount transfer that takes a lock's id so that lock can never land.
    FENCE = 3


class TransferKind(enum.IntEnum):
    LOCK = 1
    RESOLUTION = 2
    DEPOSIT = 3


ACCOUNT_CODE_OF = {AccountType.FUNDING: AccountCode.FUNDING, AccountType.SPOT: AccountCode.SPOT}
ACCOUNT_TYPE_OF = {code: kind for kind, code in ACCOUNT_CODE_OF.items()}


def account_id(user_id: int, account_type: AccountType, ledger: int) -> int:
    if not 0 < user_id <= _MAX_LOCAL_ID:
        raise ValueError("user ids are positive 64-bit integers")
    return (user_id << 64) | (ledger << 16) | ACCOUNT_CODE_OF[account_type]


def system_account_id(ledger: int) -> int:
    return (ledger << 16) | AccountCode.SYSTEM


def transfer_id(kind: TransferKind, local_id: int) -> int:
    if not 0 < local_id <= _MAX_LOCAL_ID:
        raise ValueError("local ids are positive 64-bit integers")
    return (int(kind) << _KIND_SHIFT) | local_id


def lock_id(request_id: int) -> int:
    return transfer_id(TransferKind.LOCK, request_id)


def resolution_id(request_id: int) -> int:
    return transfer_id(TransferKind.RESOLUTION, request_id)


def deposit_transfer_id(deposit_id: int) -> int:
    return transfer_id(TransferKind.DEPOSIT, deposit_id)
