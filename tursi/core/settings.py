"""Settings, loaded from an injected environment so tests never touch os.environ."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def _default_home(env: Mapping[str, str]) -> Path:
    data = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME", os.path.expanduser("~")), ".local", "share")
    return Path(data) / "tursi"


@dataclass(frozen=True)
class Settings:
    home: Path
    host: str | None = None  # TURSI_HOST: unix:///path or http(s)://host:port
    token: str | None = None  # TURSI_TOKEN: bearer token for a daemon over TCP
    autostart: bool = True
    debug: bool = False
    stop_grace_s: float = 10.0
    ready_timeout_s: float = 120.0
    sample_interval_s: float = 2.0
    log_max_bytes: int = 10 * 1024 * 1024
    log_files: int = 3  # rotated files kept besides the current one
    max_bundle_bytes: int = 64 << 30  # TURSI_MAX_BUNDLE_BYTES: cap on an imported bundle and on any file in it
    tls_ca: str | None = None  # TURSI_TLS_CA: CA/certificate file that signs the daemon's TLS certificate
    tls_fingerprint: str | None = None  # TURSI_TLS_FINGERPRINT: sha256 of the daemon's certificate (pinned)

    @classmethod
    def load(cls, env: Mapping[str, str]) -> Settings:
        home = Path(env["TURSI_HOME"]) if env.get("TURSI_HOME") else _default_home(env)
        return cls(
            home=home.expanduser().absolute(),
            host=env.get("TURSI_HOST") or None,
            token=env.get("TURSI_TOKEN") or None,
            autostart=env.get("TURSI_NO_AUTOSTART", "") in ("", "0"),
            debug=env.get("TURSI_DEBUG", "") not in ("", "0"),
            stop_grace_s=float(env.get("TURSI_STOP_GRACE", "10")),
            ready_timeout_s=float(env.get("TURSI_READY_TIMEOUT", "120")),
            sample_interval_s=float(env.get("TURSI_SAMPLE_INTERVAL", "2")),
            log_max_bytes=int(env.get("TURSI_LOG_MAX_BYTES", str(10 * 1024 * 1024))),
            log_files=int(env.get("TURSI_LOG_FILES", "3")),
            max_bundle_bytes=int(env.get("TURSI_MAX_BUNDLE_BYTES", str(64 << 30))),
            tls_ca=env.get("TURSI_TLS_CA") or None,
            tls_fingerprint=env.get("TURSI_TLS_FINGERPRINT") or None,
        )

    @property
    def socket_path(self) -> Path:
        return self.home / "tursid.sock"

    @property
    def lock_path(self) -> Path:
        return self.home / "tursid.lock"

    @property
    def db_path(self) -> Path:
        return self.home / "state.db"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def daemon_log(self) -> Path:
        return self.home / "tursid.log"

    def ensure_dirs(self) -> None:
        for d in (self.home, self.logs_dir, self.artifacts_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
