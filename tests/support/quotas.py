"""Limits for tests that are not about limits."""

from __future__ import annotations

from app.domain.limits import EffectiveLimit

# Far above any amount a test moves (and below TigerBeetle's 2^128).
UNLIMITED = EffectiveLimit(limit=2**100, version=0)
