"""What every command needs: settings and a lazily connected control client."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import click

from tursi.client import ControlClient, connect
from tursi.contexts import ContextStore, config_path
from tursi.settings import Settings


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
                ctx = ContextStore(config_path(os.environ)).current()
                if ctx is not None:  # --daemon and TURSI_HOST win over the current context
                    url = ctx["host"]
                    settings = replace(
                        settings,
                        token=settings.token or ctx.get("token"),
                        tls_ca=settings.tls_ca or ctx.get("tls_ca"),
                        tls_fingerprint=settings.tls_fingerprint or ctx.get("tls_fingerprint"),
                    )
            self._client = connect(settings, url)
        return self._client


pass_cli = click.make_pass_decorator(CliContext)
