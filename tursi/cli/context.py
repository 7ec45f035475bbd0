"""What every command needs: settings and a lazily connected control client."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import click

from tursi.client.contexts import ContextStore
from tursi.client.control import ControlClient, connect
from tursi.core.settings import Settings


@dataclass
class CliContext:
    settings: Settings
    daemon_url: str | None = None
    _client: ControlClient | None = field(default=None, repr=False)

    @property
    def client(self) -> ControlClient:
        if self._client is None:
            settings, url = self.settings, self.daemon_url
            if url is None and settings.host is None:
                ctx = ContextStore(settings.contexts_path).current()
                if ctx is not None:  # --daemon and TURSI_HOST win over the current context
                    url, settings = ctx["host"], for_context(settings, ctx)
            self._client = connect(settings, url)
        return self._client


def for_context(settings: Settings, ctx: dict[str, Any]) -> Settings:
    """Settings for a context's daemon: its own token, never TURSI_TOKEN (meant for the daemon that
    TURSI_HOST or --daemon names, it must not reach whichever daemon a context points at); its own TLS trust,
    else TURSI_TLS_FINGERPRINT / TURSI_TLS_CA."""
    return replace(
        settings,
        token=ctx.get("token") or None,
        tls_ca=ctx.get("tls_ca") or settings.tls_ca,
        tls_fingerprint=ctx.get("tls_fingerprint") or settings.tls_fingerprint,
    )


pass_cli = click.make_pass_decorator(CliContext)
