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
* Daily limits live in quota accounts, one per (user, asset, direction, UTC
  day), credited from the asset's limit-source account with the day's limit.
  A lock debits the quota with a pending transfer linked to the move's, so
  the ledger itself refuses a lock past the limit. See docs/ledger.md.
* Idempotency keys are claimed in a ledger of their own (`KEY_CLAIMS_LEDGER`,
  above every asset's) by a zero-amount transfer whose id derives from the
  user and the key: the first claimer creates it, every later one finds it.
"""

from __future__ import annotations

import enum
import hashlib

from app.domain.money import MAX_ASSET_LEDGER
from app.domain.transfer import AccountType

_KIND_SHIFT = 120
_MAX_LOCAL_ID = (1 << 64) - 1
# No asset's: theirs are at most MAX_ASSET_LEDGER.
KEY_CLAIMS_LEDGER = MAX_ASSET_LEDGER + 1


class AccountCode(enum.IntEnum):
    FUNDING = 1
    SPOT = 2
    # Daily quota accounts, one code per direction (the direction is part of the id).
    QUOTA_FUNDING_TO_SPOT = 3
    QUOTA_SPOT_TO_FUNDING = 4
    # Per quota: what lowerings asked for (debits) against what they could take (credits).
    # Its debit balance is the part of a lowering that did not fit yet: the quota owes it.
    QUOTA_CUTS_FUNDING_TO_SPOT = 5
    QUOTA_CUTS_SPOT_TO_FUNDING = 6
    # Per asset: the counterpart of every quota movement (grants, consumption, cuts).
    LIMIT_SOURCE = 8
    SYSTEM = 9
    # The two accounts of the key-claims ledger, between which every claim moves nothing.
    KEY_CLAIMS = 10
    KEY_CLAIMS_COUNTERPART = 11


class TransferCode(enum.IntEnum):
    INTERNAL_TRANSFER = 1
    DEPOSIT = 2
    # A zero-amount transfer that takes a lock's id so that lock can never land.
    FENCE = 3
    # Limit-source -> quota: the day's limit, or an override's raise.
    QUOTA_GRANT = 4
    # Quota -> its cuts account, balancing: the part of a lowering the quota can give up now.
    QUOTA_CUT = 5
    # Quota -> limit-source, pending: the quota's share of a lock, linked to it.
    QUOTA_USE = 6
    # Cuts account -> limit-source: the whole of a lowering, whatever fits of it.
    QUOTA_CUT_ORDER = 7
    # Zero amount: an Idempotency-Key's claim, the request id it names and the body's fingerprint in its user data.
    KEY_CLAIM = 8


class TransferKind(enum.IntEnum):
    LOCK = 1
    RESOLUTION = 2
    DEPOSIT = 3
    # The quota debit linked to a lock, and its post or void (same local id: the request id).
    QUOTA_LOCK = 4
    QUOTA_RESOLUTION = 5
    # Grants and cuts of one quota account; local id = quota_local_id(key, version).
    QUOTA_GRANT = 6
    QUOTA_CUT = 7
    # The whole of a lowering (cuts account -> limit source); local id as for grants and cuts.
    QUOTA_CUT_ORDER = 8
    # What a void or a raise frees goes first to what a lowering still owes (quota -> cuts account):
    # after a void, local id = the request id; after a raise, the version's quota local id.
    QUOTA_VOID_CATCH_UP = 9
    QUOTA_RAISE_CATCH_UP = 10
    # An Idempotency-Key's claim; local id: 120 bits of a digest of the user and the key.
    KEY_CLAIM = 11


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


def key_claims_account_id(code: AccountCode) -> int:
    if code not in (AccountCode.KEY_CLAIMS, AccountCode.KEY_CLAIMS_COUNTERPART):
        raise ValueError(f"{code!r} is no account of the key-claims ledger")
    return (KEY_CLAIMS_LEDGER << 16) | code


def key_claim_id(user_id: int, key: str) -> int:
    """The id of the claim of `key` by `user_id`: the same for every attempt, another for any other user or key."""
    if not 0 < user_id <= _MAX_LOCAL_ID:
        raise ValueError("user ids are positive 64-bit integers")
    # The user id has a fixed width, so no (user, key) pair encodes like another.
    digest = hashlib.blake2b(user_id.to_bytes(8, "big") + key.encode(), digest_size=15).digest()
    return (int(TransferKind.KEY_CLAIM) << _KIND_SHIFT) | int.from_bytes(digest, "big")


# -- daily quotas ---------------------------------------------------------

_MAX_LEDGER_FOR_QUOTA = MAX_ASSET_LEDGER
_MAX_DAY = (1 << 16) - 1  # days since 1970-01-01: good until the year 2149
_VERSION_BITS = 23
MAX_QUOTA_VERSION = (1 << _VERSION_BITS) - 1


class Direction(enum.StrEnum):
    FUNDING_TO_SPOT = "funding_to_spot"
    SPOT_TO_FUNDING = "spot_to_funding"

    @classmethod
    def of(cls, from_type: AccountType, to_type: AccountType) -> Direction:
        if (from_type, to_type) == (AccountType.FUNDING, AccountType.SPOT):
            return cls.FUNDING_TO_SPOT
        if (from_type, to_type) == (AccountType.SPOT, AccountType.FUNDING):
            return cls.SPOT_TO_FUNDING
        raise ValueError(f"no direction from {from_type} to {to_type}")


QUOTA_CODE_OF = {
    Direction.FUNDING_TO_SPOT: AccountCode.QUOTA_FUNDING_TO_SPOT,
    Direction.SPOT_TO_FUNDING: AccountCode.QUOTA_SPOT_TO_FUNDING,
}
QUOTA_CUTS_CODE_OF = {
    Direction.FUNDING_TO_SPOT: AccountCode.QUOTA_CUTS_FUNDING_TO_SPOT,
    Direction.SPOT_TO_FUNDING: AccountCode.QUOTA_CUTS_SPOT_TO_FUNDING,
}


def _check_quota_parts(user_id: int, ledger: int, day: int) -> None:
    if not 0 < user_id <= _MAX_LOCAL_ID:
        raise ValueError("user ids are positive 64-bit integers")
    if not 0 < ledger <= _MAX_LEDGER_FOR_QUOTA:
        raise ValueError("quota accounts need a ledger number below 2^16")
    if not 0 <= day <= _MAX_DAY:
        raise ValueError("quota days are 0..65535 days since 1970-01-01")


def quota_account_id(user_id: int, ledger: int, direction: Direction, day: int) -> int:
    """user_id << 64 | day << 32 | ledger << 16 | code: the day sits in bits that are 0 in every other account id."""
    _check_quota_parts(user_id, ledger, day)
    return (user_id << 64) | (day << 32) | (ledger << 16) | QUOTA_CODE_OF[direction]


def quota_cuts_account_id(user_id: int, ledger: int, direction: Direction, day: int) -> int:
    """The quota's cuts account: the quota's id with the cuts code (day bits as in the quota's)."""
    _check_quota_parts(user_id, ledger, day)
    return (user_id << 64) | (day << 32) | (ledger << 16) | QUOTA_CUTS_CODE_OF[direction]


def limit_source_account_id(ledger: int) -> int:
    return (ledger << 16) | AccountCode.LIMIT_SOURCE


def quota_local_id(user_id: int, ledger: int, direction: Direction, day: int, version: int) -> int:
    """The 120-bit local id of a quota's grant or cut for one limit version (0: the day's first grant).

    user (64 bits) | day (16) | ledger (16) | direction (1) | version (23).
    """
    _check_quota_parts(user_id, ledger, day)
    if not 0 <= version <= MAX_QUOTA_VERSION:
        raise ValueError(f"limit versions are 0..{MAX_QUOTA_VERSION}")
    bit = 0 if direction == Direction.FUNDING_TO_SPOT else 1
    return (user_id << 56) | (day << 40) | (ledger << 24) | (bit << _VERSION_BITS) | version


def quota_grant_id(user_id: int, ledger: int, direction: Direction, day: int, version: int) -> int:
    return (int(TransferKind.QUOTA_GRANT) << _KIND_SHIFT) | quota_local_id(user_id, ledger, direction, day, version)


def quota_cut_id(user_id: int, ledger: int, direction: Direction, day: int, version: int) -> int:
    return (int(TransferKind.QUOTA_CUT) << _KIND_SHIFT) | quota_local_id(user_id, ledger, direction, day, version)


def quota_cut_order_id(user_id: int, ledger: int, direction: Direction, day: int, version: int) -> int:
    local = quota_local_id(user_id, ledger, direction, day, version)
    return (int(TransferKind.QUOTA_CUT_ORDER) << _KIND_SHIFT) | local


def quota_raise_catch_up_id(user_id: int, ledger: int, direction: Direction, day: int, version: int) -> int:
    local = quota_local_id(user_id, ledger, direction, day, version)
    return (int(TransferKind.QUOTA_RAISE_CATCH_UP) << _KIND_SHIFT) | local


def quota_void_catch_up_id(request_id: int) -> int:
    return transfer_id(TransferKind.QUOTA_VOID_CATCH_UP, request_id)


def quota_lock_id(request_id: int) -> int:
    return transfer_id(TransferKind.QUOTA_LOCK, request_id)


def quota_resolution_id(request_id: int) -> int:
    return transfer_id(TransferKind.QUOTA_RESOLUTION, request_id)
