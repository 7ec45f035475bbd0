"""API keys for inference endpoints: generated or given at `up`, stored only as a sha256, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def matches(presented: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(presented), stored_digest)
