"""API keys for inference endpoints: generated or given at `up`, stored only as a sha256, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from tursi.errors import InvalidSpec

MIN_LENGTH = 16


def new_key() -> str:
    return "tsk_" + secrets.token_urlsafe(24)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_key(spec: str) -> str:
    """The key to use for ``--api-key SPEC`` ('auto' makes one)."""
    if spec == "auto":
        return new_key()
    if len(spec) < MIN_LENGTH or any(c.isspace() for c in spec):
        raise InvalidSpec(f"--api-key needs at least {MIN_LENGTH} characters and no spaces, or 'auto'", param="api_key")
    return spec


def matches(presented: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(presented), stored_digest)
