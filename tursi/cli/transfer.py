"""Moving bundles between the CLI and a daemon: upload (load/push) and download (build/save), with progress."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tursi.cli import render
from tursi.cli.context import CliContext
from tursi.client.types import LoadedBundle


def send_bundle(cli: CliContext, path: str, force: bool) -> LoadedBundle:
    """Upload a .tursi file to the current daemon, which verifies it before it keeps anything."""
    size = os.path.getsize(path)
    transfer = render.Transfer(f"sending {os.path.basename(path)} to {cli.client.url}", size)
    with open(path, "rb") as fh:
        answer = cli.client.load(render.CountingReader(fh, transfer), size, force=force)
    transfer.close()
    for warning in answer.get("warnings") or ():
        render.out(f"warning: {warning} (loaded because of --force)", err=True)
    verb = "already present" if answer["already_present"] else "loaded"
    render.out(
        f"{verb}: {answer['name']} ({answer['format']} {answer['quantization']}, target {answer['target']}, "
        f"{render.human_size(answer['size_bytes'])}) as artifact {answer['key'][:12]}"
    )
    render.out(f"run it: tursi up {answer['key'][:12]} --name {answer['name']}")
    return answer


def fetch_bundle(cli: CliContext, key: str, out: str, name: str | None) -> int:
    """Download an artifact as a bundle into ``out`` (written beside it, renamed when complete)."""
    download = cli.client.export_bundle(key, name)
    resp, length = download.body, download.length
    target = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or Path("."))
    transfer = render.Transfer(f"writing {target}", length)
    try:
        with os.fdopen(fd, "wb") as fh, resp:
            while chunk := resp.read(1 << 20):
                fh.write(chunk)
                transfer.advance(len(chunk))
        if 0 <= length != transfer.done:
            raise OSError(f"the bundle stream ended after {transfer.done} of {length} bytes")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    transfer.close()
    return transfer.done
