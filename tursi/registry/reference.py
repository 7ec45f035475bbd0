"""Registry references as Docker writes them: ``host[:port]/repo[/more]:tag`` or ``host/repo@sha256:...``.

A reference must name its registry (a first component with a ``.`` or a ``:``, or ``localhost``): a bare ``org/name``
is a Hugging Face hub id to Tursi, and a file path is a file. Docker Hub's short names are not taken, for the same
reason (``docker.io/library/x`` works).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tursi.core.errors import InvalidSpec

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOST = re.compile(
    r"(?:localhost|[A-Za-z0-9.-]+\.[A-Za-z0-9-]+|[A-Za-z0-9.-]+:\d+|\[[0-9a-fA-F:]+\](?::\d+)?)(?::\d+)?"
)


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port]
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def pointer(self) -> str:
        """What the manifest URL names: the digest when given, else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}" + (f"@{self.digest}" if self.digest else f":{self.tag or 'latest'}")


def is_reference(text: str) -> bool:
    """Whether ``text`` reads as a registry reference (its first component is a registry host)."""
    first, slash, _ = text.partition("/")
    return bool(slash) and _HOST.fullmatch(first) is not None and ("." in first or ":" in first or first == "localhost")


def parse_reference(text: str) -> Reference:
    """``text`` as a Reference; InvalidSpec saying what a reference looks like otherwise."""
    if not is_reference(text):
        raise InvalidSpec(f"{text!r} is not a registry reference: write host[:port]/repository[:tag|@sha256:...]")
    host, _, rest = text.partition("/")
    digest = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise InvalidSpec(f"{text!r}: a digest is sha256: and 64 lowercase hex digits")
    tag = None
    name, colon, maybe_tag = rest.rpartition(":")
    if colon and "/" not in maybe_tag:
        rest, tag = name, maybe_tag
        if not _TAG.fullmatch(tag):
            raise InvalidSpec(f"{text!r}: a tag is up to 128 letters, digits, '_', '.' and '-'")
    if not _REPO.fullmatch(rest):
        raise InvalidSpec(f"{text!r}: a repository is lowercase path components (a-z, 0-9, '.', '_', '-')")
    return Reference(host, rest, tag if tag or digest else "latest", digest)
