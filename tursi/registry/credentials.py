"""Registry credentials: Tursi's own file (`tursi login`, 0600, written atomically) and Docker's `config.json`
(`auths`: base64 ``user:password``), read when Tursi has none for a registry. Docker's credential helpers
(``credsStore``) are not run."""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RegistryAuth:
    username: str | None = None
    password: str | None = None
    ca_pem: str | None = None  # a CA (or the registry's certificate), PEM text, to trust beyond the system's;
    # text, not a path, so credentials sent to a remote daemon carry the certificate itself
    plain_http: bool = False  # loopback registries without TLS only

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, False)}

    @classmethod
    def from_json(cls, data: Any) -> RegistryAuth:
        if not isinstance(data, dict):
            return cls()
        text = {k: data.get(k) if isinstance(data.get(k), str) else None for k in ("username", "password", "ca_pem")}
        return cls(**text, plain_http=data.get("plain_http") is True)


class CredentialStore:
    def __init__(self, path: Path, docker_config: Path | None = None) -> None:
        self.path = path
        self.docker_config = docker_config

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, registry: str) -> RegistryAuth:
        own = self._load().get(registry)
        if own is not None:
            return RegistryAuth.from_json(own)
        return self._docker(registry)

    def save(self, registry: str, auth: RegistryAuth) -> None:
        data = self._load()
        data[registry] = auth.as_json()
        self._write(data)

    def remove(self, registry: str) -> bool:
        data = self._load()
        found = data.pop(registry, None) is not None
        if found:
            self._write(data)
        return found

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".registries.")  # mkstemp files are 0600
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def _docker(self, registry: str) -> RegistryAuth:
        if self.docker_config is None:
            return RegistryAuth()
        try:
            auths = json.loads(self.docker_config.read_text(encoding="utf-8")).get("auths") or {}
            entry = auths.get(registry) or auths.get(f"https://{registry}") or {}
            user, _, password = base64.b64decode(entry.get("auth", "")).decode().partition(":")
        except (OSError, ValueError, AttributeError, binascii.Error, UnicodeDecodeError):
            return RegistryAuth()
        return RegistryAuth(user, password) if user else RegistryAuth()
