"""Bearer tokens: HS256 JWTs whose subject is the user id."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import jwt
from flask import current_app, g, request

from app.domain.errors import PermissionDenied as Forbidden
from app.domain.errors import Unauthenticated
from app.domain.ids import parse_id

P = ParamSpec("P")
R = TypeVar("R")

OPERATOR_ROLE = "operator"
USER_ROLE = "user"


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


def issue_token(secret: str, user_id: int, *, operator: bool = False, ttl_seconds: int = 3600) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "role": OPERATOR_ROLE if operator else USER_ROLE,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def _principal_from_request() -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("a bearer token is required")
    try:
        claims = jwt.decode(
            token,
            current_app.config["JWT_SECRET"],
            algorithms=["HS256"],
            options={"require": ["sub", "exp"]},
        )
        user_id = parse_id(claims["sub"])
    except (jwt.PyJWTError, ValueError):
        raise Unauthenticated("the bearer token is invalid or expired") from None
    return Principal(user_id=user_id, role=str(claims.get("role", USER_ROLE)))


def authenticated(view: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        g.principal = _principal_from_request()
        return view(*args, **kwargs)

    return wrapper


def operator_only(view: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        principal = _principal_from_request()
        if not principal.is_operator:
            raise Forbidden("operator role required")
        g.principal = principal
        return view(*args, **kwargs)

    return wrapper


def current_principal() -> Principal:
    principal: Principal = g.principal
    return principal


# Called by app/api/blueprint.py before any input is parsed (issue 9).
def authenticate() -> Principal:
    """Check the bearer token and remember the caller for current_principal()."""
    g.principal = _principal_from_request()
    return g.principal  # type: ignore[no-any-return]


def authorize_operator() -> Principal:
    """authenticate(), and refuse anyone but an operator."""
    principal = _principal_from_request()
    if not principal.is_operator:
        raise Forbidden("operator role required")
    g.principal = principal
    return principal
