"""Bearer tokens: HS256 JWTs whose subject is the user id.

Users' and operators' tokens are signed with different keys (JWT_SECRET,
OPERATOR_JWT_SECRET): a token is verified with the key of the role it
claims, so a holder of the user key cannot mint an operator token. Every
token names this service as its issuer and audience, and a token meant to
live longer than JWT_MAX_TTL_SECONDS is refused even when validly signed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import jwt
from flask import current_app, g, request

from app.domain.errors import DomainError, Unauthenticated, ValidationFailed
from app.domain.errors import PermissionDenied as Forbidden
from app.domain.ids import parse_canonical_id, parse_id

P = ParamSpec("P")
R = TypeVar("R")

OPERATOR_ROLE = "operator"
USER_ROLE = "user"
ROLES = (USER_ROLE, OPERATOR_ROLE)
ALGORITHM = "HS256"
# Clocks of the minting and verifying machines may differ this much.
LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class Principal:
    user_id: int
    role: str

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR_ROLE

    @property
    def name(self) -> str:
        return f"{self.role}:{self.user_id}"


@dataclass(frozen=True)
class TokenPolicy:
    """What a token must satisfy; one per app, from the settings."""

    user_key: str
    operator_key: str
    issuer: str
    audience: str
    max_ttl_seconds: int

    def key_for(self, role: str) -> str:
        return self.operator_key if role == OPERATOR_ROLE else self.user_key


def check_ttl(ttl_seconds: int, max_ttl_seconds: int) -> None:
    if ttl_seconds <= 0:
        raise ValidationFailed("a token's lifetime must be positive", field="ttl")
    if ttl_seconds > max_ttl_seconds:
        raise ValidationFailed(f"a token's lifetime is at most {max_ttl_seconds} seconds", field="ttl")


def issue_token(policy: TokenPolicy, user_id: int, *, operator: bool = False, ttl_seconds: int = 3600) -> str:
    """A token for `user_id`, signed with the key of its role."""
    check_ttl(ttl_seconds, policy.max_ttl_seconds)
    parse_id(str(user_id))  # a positive 63-bit id, or ValueError
    role = OPERATOR_ROLE if operator else USER_ROLE
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "role": role,
        "iss": policy.issuer,
        "aud": policy.audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, policy.key_for(role), algorithm=ALGORITHM)


_REFUSAL = "the bearer token is invalid or expired"


def verify_token(policy: TokenPolicy, token: str, now: float | None = None) -> Principal:
    """The principal a token names; Unauthenticated unless every check holds."""
    try:
        # Unverified only to pick the key: the claim is verified with that key next.
        role = jwt.decode(token, options={"verify_signature": False}).get("role", USER_ROLE)
    except jwt.PyJWTError:
        raise Unauthenticated(_REFUSAL) from None
    if role not in ROLES:
        raise Unauthenticated(_REFUSAL)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            policy.key_for(role),
            algorithms=[ALGORITHM],
            issuer=policy.issuer,
            audience=policy.audience,
            leeway=LEEWAY_SECONDS,
            options={"require": ["sub", "exp", "iat", "iss", "aud"]},
        )
    except jwt.PyJWTError:
        raise Unauthenticated(_REFUSAL) from None
    if claims.get("role", USER_ROLE) != role:
        raise Unauthenticated(_REFUSAL)
    iat, exp = claims["iat"], claims["exp"]
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        raise Unauthenticated(_REFUSAL)
    moment = time.time() if now is None else now
    # A stolen long-lived token is a standing key: refuse any meant to last
    # longer than the maximum, whatever its issue time claims.
    if exp - iat > policy.max_ttl_seconds or exp - moment > policy.max_ttl_seconds + LEEWAY_SECONDS:
        raise Unauthenticated("the bearer token lives longer than allowed")
    subject = claims["sub"]
    try:
        # "03001" is not 3001: one user, one spelling.
        user_id = parse_canonical_id(subject)
    except ValueError:
        raise Unauthenticated(_REFUSAL) from None
    return Principal(user_id=user_id, role=role)


def token_policy() -> TokenPolicy:
    policy: TokenPolicy = current_app.config["TOKEN_POLICY"]
    return policy


def _principal_from_request() -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("a bearer token is required")
    return verify_token(token_policy(), token.strip())


def current_principal() -> Principal:
    principal: Principal = g.principal
    return principal


def checked_principal() -> Principal | None:
    """The caller, if this request's token was already checked (by the blueprint's guard)."""
    principal: Principal | None = g.get("principal")
    return principal


# Called by the blueprints' guard (app/api/inbound.py) before any input is parsed.
def authorize(role: str) -> Principal:
    """Check the bearer token, refuse any role but `role`, and remember the caller for current_principal().

    The roles never overlap: an operator token on a user route would act as
    the user with that number (the id spaces are shared) and be audited as
    the user; an operator acts through the admin routes, which audit them.
    """
    principal = _principal_from_request()
    if principal.role != role:
        raise Forbidden(f"{role} role required")
    g.principal = principal
    return principal


def rate_limit_key() -> str:
    """Whose budget a request spends (app/api/rate_limits.py): its user's, else its address's."""
    # The guard of the transfer blueprint has verified the token by now; a
    # JWT check costs more than the rest of the limiter, so it is not repeated.
    # By role and id: operator 7 and user 7 are different callers with budgets of their own.
    checked = checked_principal()
    if checked is not None:
        return checked.name
    try:
        return _principal_from_request().name
    except DomainError:
        return f"anonymous:{request.remote_addr or 'unknown'}"
