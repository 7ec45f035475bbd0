"""The LAN story on one machine: a "workstation" and a "device" network namespace joined by a veth pair.

The device runs tursid from the serving-only venv with --listen over TLS with a token; the workstation pushes
the MiniLM bundle over the veth, deploys it with an API key on 0.0.0.0 and calls it. A wrong token gets 401, a
bundle with one byte changed gets digest_mismatch, a tar with a ../ member is refused with nothing written.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env, wait_for
from tursi.formats.bundle import local_key

pytestmark = pytest.mark.slow

WS_IP, DEV_IP = "10.213.7.1", "10.213.7.2"
CONTROL_PORT, MODEL_PORT = 8765, 8080


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str]]:
    if shutil.which("ip") is None:
        pytest.skip("network namespaces: the `ip` command (iproute2) is not installed")
    tag = f"{os.getpid() % 100000}"
    ws, dev = f"tursi-ws-{tag}", f"tursi-dev-{tag}"
    made = _ip("netns", "add", ws)
    if made.returncode != 0:
        pytest.skip(f"network namespaces cannot be created here (needs root/CAP_SYS_ADMIN): {made.stderr.strip()}")
    try:
        steps = [
            ["netns", "add", dev],
            ["link", "add", "tws0", "netns", ws, "type", "veth", "peer", "name", "tdev0", "netns", dev],
            ["-n", ws, "addr", "add", f"{WS_IP}/24", "dev", "tws0"],
            ["-n", dev, "addr", "add", f"{DEV_IP}/24", "dev", "tdev0"],
            ["-n", ws, "link", "set", "tws0", "up"],
            ["-n", dev, "link", "set", "tdev0", "up"],
            ["-n", ws, "link", "set", "lo", "up"],
            ["-n", dev, "link", "set", "lo", "up"],
        ]
        for step in steps:
            res = _ip(*step)
            if res.returncode != 0:
                pytest.skip(f"cannot wire the veth pair here: ip {' '.join(step)}: {res.stderr.strip()}")
        yield ws, dev
    finally:
        _ip("netns", "del", ws)
        _ip("netns", "del", dev)


def in_ns(ns: str, cmd: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], env=env, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


API_CALL = """
import json, sys
from openai import OpenAI
from tursi.client.control import ControlClient
from tursi.core.errors import TursiError
args = json.loads(sys.argv[1])
out = {}
if "endpoint" in args:
    client = OpenAI(base_url=args["endpoint"], api_key=args["api_key"])
    emb = client.embeddings.create(model="minilm", input=["hello lan"])
    out["dim"] = len(emb.data[0].embedding)
    try:
        OpenAI(base_url=args["endpoint"], api_key="not-the-key-at-all", max_retries=0).embeddings.create(
            model="minilm", input="x")
    except Exception as e:
        out["wrong_key"] = getattr(e, "status_code", None)
    import urllib.request
    out["health"] = urllib.request.urlopen(args["endpoint"].rsplit("/v1", 1)[0] + "/health", timeout=10).status
if "upload" in args:
    c = ControlClient(args["url"], token=args["token"], tls_fingerprint=args["fingerprint"])
    with open(args["upload"], "rb") as fh:
        try:
            c.upload("/v1/artifacts/load", fh, __import__("os").path.getsize(args["upload"]))
            out["code"] = "accepted"
        except TursiError as e:
            out["code"], out["status"] = e.code, e.http_status
print(json.dumps(out))
"""


def test_push_deploy_and_infer_across_a_veth(
    two_hosts: tuple[str, str], serve_venv: Path, minilm_bundle: tuple[Path, dict], device_env: Env, tmp_path: Path
) -> None:
    ws, dev = two_hosts
    bundle, index = minilm_bundle
    device_env.home.mkdir(parents=True)
    log = device_env.home / "tursid.stderr"
    with log.open("w") as err:
        daemon = subprocess.Popen(
            ["ip", "netns", "exec", dev, str(serve_venv / "bin" / "tursid"), "--listen", f"{DEV_IP}:{CONTROL_PORT}"],
            env=device_env.vars,
            stderr=err,
            stdout=subprocess.DEVNULL,
        )
    try:
        text = wait_for(lambda: "TLS certificate sha256:" in log.read_text() and log.read_text(), timeout=60)
        token = text.split("TURSI_TOKEN): ", 1)[1].split()[0]
        fingerprint = text.split("TLS certificate ", 1)[1].split()[0]
        url = f"https://{DEV_IP}:{CONTROL_PORT}"
        ws_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TURSI_")},
            "TURSI_HOME": str(tmp_path / "ws-home"),
            "TURSI_HOST": url,
            "TURSI_TOKEN": token,
            "TURSI_TLS_FINGERPRINT": fingerprint,
        }
        cli = [sys.executable, "-m", "tursi.cli"]
        wait_for(lambda: in_ns(ws, [*cli, "ps"], ws_env).returncode == 0, timeout=30)

        wrong = in_ns(ws, [*cli, "ps"], {**ws_env, "TURSI_TOKEN": "tct_wrong"})
        assert wrong.returncode == 77
        assert "needs its token" in wrong.stderr

        pushed = in_ns(ws, [*cli, "push", str(bundle)], ws_env, timeout=300)
        assert pushed.returncode == 0, pushed.stderr
        assert f"as artifact {local_key(index['key'])[:12]}" in pushed.stdout
        up = in_ns(
            ws,
            [
                *cli,
                "up",
                local_key(index["key"])[:12],
                "--name",
                "minilm",
                "--host",
                "0.0.0.0",
                "--port",
                str(MODEL_PORT),
                "--api-key",
                "auto",
            ],
            ws_env,
            timeout=300,
        )
        assert up.returncode == 0, up.stderr
        api_key = up.stdout.split("store it now): ", 1)[1].split()[0]
        endpoint = f"http://{DEV_IP}:{MODEL_PORT}/v1"
        called = in_ns(
            ws,
            [sys.executable, "-c", API_CALL, json.dumps({"endpoint": endpoint, "api_key": api_key})],
            ws_env,
            timeout=120,
        )
        assert called.returncode == 0, called.stderr
        assert json.loads(called.stdout) == {"dim": 384, "wrong_key": 401, "health": 200}
        # the device is not reachable on the workstation's loopback: the call really crossed the veth
        assert in_ns(
            ws,
            [
                sys.executable,
                "-c",
                API_CALL,
                json.dumps({"endpoint": f"http://127.0.0.1:{MODEL_PORT}/v1", "api_key": api_key}),
            ],
            ws_env,
            timeout=60,
        ).returncode

        before = sorted(p.name for p in (device_env.home / "artifacts").iterdir())
        flipped = tmp_path / "flipped.tursi"
        data = bytearray(bundle.read_bytes())
        data[len(data) // 2] ^= 0x01  # inside model.onnx, the bulk of the archive
        flipped.write_bytes(bytes(data))
        slip = tmp_path / "slip.tursi"
        with tarfile.open(bundle) as tin, tarfile.open(slip, "w", format=tarfile.PAX_FORMAT) as tout:
            for m in tin.getmembers():
                tout.addfile(m, tin.extractfile(m))
            evil = tarfile.TarInfo("artifact/../../../tmp/tursi-slip-proof")
            evil.size = 4
            tout.addfile(evil, io.BytesIO(b"pwn\n"))
        for path, code in ((flipped, "digest_mismatch"), (slip, "unsafe_bundle")):
            args = {"upload": str(path), "url": url, "token": token, "fingerprint": fingerprint}
            res = in_ns(ws, [sys.executable, "-c", API_CALL, json.dumps(args)], ws_env, timeout=120)
            assert res.returncode == 0, res.stderr
            assert json.loads(res.stdout) == {"code": code, "status": 422}
        assert sorted(p.name for p in (device_env.home / "artifacts").iterdir()) == before  # nothing written
        assert not Path("/tmp/tursi-slip-proof").exists()
        cli_push = in_ns(ws, [*cli, "push", str(flipped)], ws_env, timeout=300)
        assert cli_push.returncode == 65
        assert "does not match" in cli_push.stderr
        print(f"two hosts: pushed {bundle.stat().st_size / 2**20:.1f} MiB over TLS to {url}, served on {endpoint}")
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
