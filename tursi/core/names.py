"""Names of deployments, bundles and contexts: the one rule the API checks them with, and the name Tursi picks
from a model reference when none is given.

The rule is ``[a-z0-9][a-z0-9._-]{0,63}``: at most NAME_MAX (64) characters, the limit every route validates
a given name with. A picked name obeys the same rule, its ``-2``, ``-3``... suffix included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePath
from typing import TypeGuard

NAME_MAX = 64
NAME_RULE = "[a-z0-9][a-z0-9._-]{0,63}"  # as messages show it
NAME_PATTERN = f"^{NAME_RULE}$"  # as the OpenAPI documents show it
NAME_RE = re.compile(NAME_PATTERN)
FALLBACK = "model"


def is_valid_name(name: object) -> TypeGuard[str]:
    return isinstance(name, str) and NAME_RE.match(name) is not None


def slug(display: str) -> str:
    """A valid name from a model's display name or reference: its last path part, lower-cased, every character
    outside [a-z0-9._-] a dash, no leading or trailing separator, cut to NAME_MAX; "model" when nothing is left.

    >>> slug("SmolLM2-135M Instruct")
    'smollm2-135m-instruct'
    >>> slug("/models/Qwen2.5 (chat)/")
    'qwen2.5--chat'
    """
    name = "".join(c if _allowed(c) else "-" for c in PurePath(display).name.lower()).strip("-._")[:NAME_MAX]
    return name if NAME_RE.match(name) else FALLBACK


def unique_name(base: str, taken: Callable[[str], bool]) -> str:
    """``base``, else ``base-2``, ``base-3``...: the first that is not ``taken``. ``base`` is shortened as much as
    the suffix needs, so the name stays within NAME_MAX."""
    name, n = base[:NAME_MAX], 1
    while taken(name):
        n += 1
        suffix = f"-{n}"
        name = base[: NAME_MAX - len(suffix)] + suffix
    return name


def _allowed(c: str) -> bool:
    return c in "._-" or (c.isascii() and c.isalnum())


REPLICA = "#"  # NAME#2, NAME#3: the extra workers of a deployment with --replicas (outside the name rule)


def is_replica(name: str) -> bool:
    return REPLICA in name


def replica_group(name: str) -> str:
    """The deployment a replica belongs to (a deployment's own name for itself)."""
    return name.split(REPLICA, 1)[0]
