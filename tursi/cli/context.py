"""What every command needs: settings and a lazily connected control client."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from tursi.client import ControlClient, connect
from tursi.settings import Settings


@dataclass
class CliContext:
    settings: Settings
    daemon_url: str | None = None
    _client: ControlClient | None = field(default=None, repr=False)

    @property
    def client(self) -> ControlClient:
        if self._client is None:
            self._client = connect(self.settings, self.daemon_url)
        return self._client


pass_cli = click.make_pass_decorator(CliContext)
