"""The Idempotency-Key header."""

from __future__ import annotations

import re

from flask import request

from app.domain.errors import ValidationFailed

# fullmatch, not match with `$`: `$` also matches before a final newline.
_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise ValidationFailed("Idempotency-Key must be 1 to 64 characters of [A-Za-z0-9_-]")
    return key
