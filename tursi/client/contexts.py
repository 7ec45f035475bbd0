"""Named daemon contexts, like `docker context`: a JSON file (0600: it may hold tokens) in the config dir."""

from __future__ import annotations

import json
import os
import re
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from tursi.core.addresses import is_loopback
from tursi.core.errors import DeploymentExists, InsecureTransport, InvalidSpec, ModelNotFound
from tursi.core.names import NAME_RULE, is_valid_name


class ContextStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        return {"current": data.get("current"), "contexts": dict(data.get("contexts") or {})}

    def save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".contexts.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:  # mkstemp files are 0600
            json.dump(data, fh, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

    def create(
        self, name: str, host: str, token: str | None, tls_ca: str | None = None, tls_fingerprint: str | None = None
    ) -> None:
        if not is_valid_name(name) or name == "default":
            raise InvalidSpec(f"a context name is {NAME_RULE} and not 'default'", param="name")
        if not re.match(r"^(unix:///|https?://)", host):
            raise InvalidSpec("--host must be unix:///path or http(s)://host:port", param="host")
        if token and host.startswith("http://") and not is_loopback(urllib.parse.urlsplit(host).hostname or ""):
            raise InsecureTransport(
                f"a token would cross the network in clear text to {host}", hint="use https:// (tursid --listen)"
            )
        data = self.load()
        if name in data["contexts"]:
            raise DeploymentExists(f"context '{name}' exists", hint=f"tursi context rm {name}")
        data["contexts"][name] = {"host": host, "token": token, "tls_ca": tls_ca, "tls_fingerprint": tls_fingerprint}
        self.save(data)

    def use(self, name: str) -> None:
        data = self.load()
        if name != "default" and name not in data["contexts"]:
            raise ModelNotFound(f"no context named '{name}'", hint="tursi context ls")
        data["current"] = None if name == "default" else name
        self.save(data)

    def remove(self, name: str) -> None:
        data = self.load()
        if data["contexts"].pop(name, None) is None:
            raise ModelNotFound(f"no context named '{name}'", hint="tursi context ls")
        if data["current"] == name:
            data["current"] = None
        self.save(data)

    def current(self) -> dict[str, Any] | None:
        data = self.load()
        return data["contexts"].get(data["current"]) if data["current"] else None
