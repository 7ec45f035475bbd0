"""``tursid``: the Tursi daemon. ``python -m tursi.daemon`` is the same."""

from __future__ import annotations

import os
import sys

from tursi.errors import TursiError


def main() -> int:
    from tursi.daemon.app import configure_logging, serve
    from tursi.settings import Settings

    settings = Settings.load(os.environ)
    configure_logging(settings.debug)
    try:
        return serve(settings)
    except TursiError as e:
        sys.stderr.write(f"tursid: {e.detail}\n")
        return e.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
