"""Tursi on an emulated aarch64 device: runtime packs built here (llama.cpp cross-compiled per profile) install
offline in a Debian arm64 root filesystem run by qemu-user, and serve bundles built on this x86 workstation.

Cortex-A76 (Pi 5) and Cortex-A72 (Pi 4) are emulated by qemu 10 (`QEMU_CPU`), including the CPU features
/proc/cpuinfo shows. Emulation is slow, so the work asked of the device is small: correctness, not speed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import DAEMON, DaemonProc, Env, make_env, stop_everything_in
from tests.e2e.arm_device import EmulatedDevice, arm_tools_problem, cpu_features, device_workdir, mounts_under
from tests.e2e.arm_rootfs import cached_rootfs
from tests.e2e.test_minilm import SENTENCES, fp32_reference
from tests.integration.test_lifecycle import free_port
from tursi.client.control import ControlClient
from tursi.client.daemon_start import spawn_tursid
from tursi.core.errors import DaemonUnavailable

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "tursi.cli"]
A76, A72 = "cortex-a76", "cortex-a72"
PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"  # SmolLM2's ChatML
PARIS = [{"role": "user", "content": "What is the capital of France?"}]
HOME = "/h"  # the device's TURSI_HOME (short: the socket path must fit in 108 bytes on the host side)


@dataclass
class Built:
    """What the workstation made: packs, bundles, and the x86 worker's answers to compare with."""

    packs: dict[str, Path]
    minilm_bundle: Path
    llm_bundle: Path
    llm_gguf: Path
    x86_embeddings: np.ndarray
    exact_int8: np.ndarray  # the bundle's int8 model in exact integer arithmetic (see exact_int8_reference)
    fp32_embeddings: np.ndarray  # transformers' fp32 MiniLM: how far int8 is from the source, per sentence
    x86_reply: str
    x86_logits: dict


def tursi(
    *args: str, env: dict[str, str], timeout: float = 1800, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"tursi {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def rootfs() -> Path:
    problem = arm_tools_problem()
    if problem:
        pytest.skip(f"no emulated aarch64 device here: {problem}")
    return cached_rootfs()


def embed_each(client: Any, model: str) -> np.ndarray:
    """SENTENCES' vectors, one request each. Dynamic int8 sets its activation scales per call over the whole padded
    batch, so a text's vector moves a little with its batch neighbours: one text a call compares kernels, not
    groupings (a worker groups a request's texts by its lane count, i.e. by the CPU)."""
    return np.array([client.embeddings.create(model=model, input=[s]).data[0].embedding for s in SENTENCES])


def exact_int8_reference(minilm_dir: Path, artifact: Path, out: Path) -> np.ndarray:
    """SENTENCES through the artifact's int8 model as exact integer arithmetic would give them, one text a call.

    The Pi 5 plan keeps full 8-bit weights: ARM's int8 kernels (NEON/dotprod) and x86 VNNI sum them exactly, but x86
    AVX2 without VNNI adds pairs of products in int16 (vpmaddubsw) and saturates, so such a workstation is not a
    reference for the device. The converter's int8 emulator (DynamicQuantizeLinear, then the artifact's own int8
    weights dequantized, in fp32) is: it computes what an exact kernel computes, up to fp32 rounding."""
    from optimum.exporters.onnx import main_export

    from converters.int8_sensitivity import Emulated

    main_export(str(minilm_dir), output=str(out), task="feature-extraction", library_name="transformers", device="cpu")
    emu = Emulated(out / "model.onnx", artifact / "model.onnx", artifact, SENTENCES, threads=2)
    return np.asarray(emu.vectors(set()))


def _x86_references(env: Env, built: dict, minilm_bundle: Path, llm_bundle: Path) -> None:
    """The same artifacts served by x86 workers (loaded with --force: they were planned for the Pi 5)."""
    from openai import OpenAI

    for name, bundle in (("minilm", minilm_bundle), ("smol", llm_bundle)):
        key = env.cli("load", "--force", str(bundle), check=True).stdout.split("as artifact ", 1)[1].split()[0]
        env.cli("up", key, "--name", name, "--port", str(port := free_port()), check=True)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        if name == "minilm":
            built["x86_embeddings"] = embed_each(client, name)
            built["minilm_artifact"] = Path(json.loads(env.cli("inspect", name, check=True).stdout)["artifact_path"])
        else:
            reply = client.chat.completions.create(model=name, messages=PARIS, max_tokens=8, temperature=0)
            built["x86_reply"] = reply.choices[0].message.content
            info = json.loads(env.cli("inspect", name, check=True).stdout)
            built["llm_gguf"] = Path(info["artifact_path"]) / "model.gguf"


@pytest.fixture(scope="module")
def built(rootfs: Path, tmp_path_factory: pytest.TempPathFactory, smollm2_hf: Path, minilm_dir: Path) -> Built:
    out = tmp_path_factory.mktemp("workstation")
    env = make_env(out / "home")
    packs = {}
    for target in ("rpi5", "rpi4"):
        t0 = time.monotonic()
        proc = tursi("pack", "--target", target, "-o", str(out / f"{target}.tar"), env=env.vars)
        packs[target] = out / f"{target}.tar"
        print(f"\n{proc.stdout.strip()} [{time.monotonic() - t0:.0f} s]")
    daemon = DaemonProc(env).start()
    refs: dict = {}
    minilm, llm = out / "minilm-rpi5.tursi", out / "smollm2-rpi5.tursi"
    try:
        env.cli("build", "minilm", "--target", "rpi5", "-o", str(minilm), check=True)
        env.cli("build", str(smollm2_hf), "--target", "rpi5", "--bits", "4", "-o", str(llm), check=True)
        _x86_references(env, refs, minilm, llm)
        gguf = out / "smollm2-rpi5.gguf"
        shutil.copy2(refs["llm_gguf"], gguf)
    finally:
        daemon.terminate()
        stop_everything_in(env.home)
    probe = [sys.executable, str(ROOT / "tests/e2e/llama_logits.py"), str(gguf), PROMPT, "10"]
    logits = json.loads(subprocess.run(probe, capture_output=True, text=True, check=True).stdout)
    fp32 = fp32_reference(minilm_dir, SENTENCES)
    exact = exact_int8_reference(minilm_dir, refs["minilm_artifact"], out / "minilm-fp32-onnx")
    return Built(packs, minilm, llm, gguf, refs["x86_embeddings"], exact, fp32, refs["x86_reply"], logits)


@pytest.fixture(scope="module")
def device(rootfs: Path) -> Iterator[EmulatedDevice]:
    workdir = device_workdir()
    with EmulatedDevice(rootfs, workdir, A76) as dev:
        yield dev
    if not mounts_under(workdir):
        shutil.rmtree(workdir, ignore_errors=True)


def install_pack(
    device: EmulatedDevice, pack: Path, prefix: str, cpu: str, *, unpacked: bool
) -> subprocess.CompletedProcess[str]:
    """As a user would: copy the pack over, unpack it, run its own installer, with no network at all (``unpacked``:
    point --pack at the unpacked folder, as the README says; else at the file, which the installer unpacks)."""
    folder = f"/root/{pack.stem}"
    device.host_path(folder).mkdir(parents=True, exist_ok=True)
    shutil.copy2(pack, device.host_path(f"{folder}.tar"))
    device.run(["tar", "-xf", f"{folder}.tar", "-C", folder, "--no-same-owner"], cpu=cpu)
    given = f"{folder}/tursi-pack" if unpacked else f"{folder}.tar"
    argv = ["bash", f"{folder}/tursi-pack/install-device.sh", "--pack", given, "--prefix", prefix, "--no-service"]
    # PIP_COMPILE=0: pip skips byte-compiling the venv (the installer's pip and the ones ensurepip runs); under
    # qemu that is 30 of a pack's 80 s, and the modules tursid imports compile on first import instead (+3 s).
    # On a real device the installer compiles, so a service user that cannot write the venv starts fast.
    env = device.env(cpu, PIP_COMPILE="0")
    return device.run(argv, cpu=cpu, network=False, env=env, check=False, timeout=1200)


@dataclass
class DeviceDaemon:
    env: Env  # the workstation's CLI pointed at the device's socket
    handle: object
    home: str = HOME  # its TURSI_HOME, in the device

    def up(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return tursi("up", *args, env=self.env.vars, timeout=900, check=check)


def start_device_daemon(
    device: EmulatedDevice, prefix: str, cpu: str, log: Path, netns: str | None = None, home_in_device: str = HOME
) -> DeviceDaemon:
    """tursid of the pack at ``prefix``, in the device (in network namespace ``netns``), with its own TURSI_HOME: a
    second daemon on the same home would lose its lock, and the CLI would talk to the first one."""
    home = device.host_path(home_in_device)
    url = f"unix://{home / 'tursid.sock'}"
    env = make_env(log.parent / "cli-home")
    env.vars["TURSI_HOST"] = url
    device_vars = device.env(  # an emulated load takes minutes: the tests keep what they deployed loaded
        cpu, TURSI_HOME=home_in_device, TURSI_READY_TIMEOUT="900", TURSI_STOP_GRACE="20", TURSI_KEEP_ALIVE="forever"
    )
    command = device.command([f"{prefix}/venv/bin/tursid"], cpu=cpu)
    handle = spawn_tursid(
        url, device_vars, log_path=log, command=["ip", "netns", "exec", netns, *command] if netns else command
    )
    try:
        handle.wait_healthy(ControlClient(url), timeout_s=300)
    except DaemonUnavailable as e:
        raise AssertionError(f"{e.detail}\n{log.read_text(errors='replace')[-3000:]}") from None
    return DeviceDaemon(env, handle, home_in_device)


def stop_device_daemon(device: EmulatedDevice, daemon: DeviceDaemon) -> None:
    tursi("down", "--all", env=daemon.env.vars, timeout=300, check=False)
    daemon.handle.stop(timeout_s=120)  # type: ignore[attr-defined]
    stop_everything_in(device.host_path(daemon.home))


@pytest.fixture(scope="module")
def rpi5_on_a76(
    device: EmulatedDevice, built: Built, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeviceDaemon]:
    t0 = time.monotonic()
    proc = install_pack(device, built.packs["rpi5"], "/opt/tursi", A76, unpacked=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"\nrpi5 pack installed offline under {A76} in {time.monotonic() - t0:.0f} s: {proc.stdout.splitlines()[0]}")
    daemon = start_device_daemon(device, "/opt/tursi", A76, tmp_path_factory.mktemp("a76") / "tursid.log")
    yield daemon
    stop_device_daemon(device, daemon)


def test_the_rpi5_pack_installs_offline_and_tursid_sees_an_a76(
    device: EmulatedDevice, rpi5_on_a76: DeviceDaemon
) -> None:
    features = cpu_features(device, A76)
    assert "asimddp" in features
    own_cli = device.run(
        ["/opt/tursi/venv/bin/tursi", "system", "--format", "json"], env=device.env(A76, TURSI_HOME=HOME)
    )
    info = json.loads(own_cli.stdout)  # the device's own CLI, run on the device
    assert info["hardware"]["arch"] == "aarch64"
    assert {"neon", "dotprod"} <= set(info["hardware"]["features"])
    assert "torch" not in device.run(["/opt/tursi/venv/bin/pip", "list"]).stdout  # serving only
    print(
        f"\nemulated {A76}: /proc/cpuinfo features {' '.join(features)}; tursi system: {info['hardware']['features']}"
    )


def test_a_minilm_bundle_built_on_x86_serves_the_same_embeddings(rpi5_on_a76: DeviceDaemon, built: Built) -> None:
    from openai import OpenAI

    load = tursi("load", str(built.minilm_bundle), env=rpi5_on_a76.env.vars)
    key = load.stdout.split("as artifact ", 1)[1].split()[0]  # fits: built for rpi5, no --force
    port = free_port()
    rpi5_on_a76.up(key, "--name", "minilm", "--port", str(port))
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=600)
    t0 = time.monotonic()
    got = embed_each(client, "minilm")
    seconds = time.monotonic() - t0
    cos = (got * built.exact_int8).sum(1)  # all three are L2-normalised
    x86 = (built.x86_embeddings * built.exact_int8).sum(1)
    batched = np.array([d.embedding for d in client.embeddings.create(model="minilm", input=SENTENCES).data])
    moved = (batched * got).sum(1)  # the same texts in one request: grouped by length, each group one call
    arm_fp32, x86_fp32 = (got * built.fp32_embeddings).sum(1), (built.x86_embeddings * built.fp32_embeddings).sum(1)
    below = [f"{SENTENCES[i]!r}: {cos[i]:.5f}" for i in np.flatnonzero(cos < 0.999)]
    print(
        f"\nMiniLM int8 (rpi5 plan, full 8-bit weights) on emulated {A76}, {len(SENTENCES)} sentences one a request "
        f"in {seconds:.1f} s, vs exact int8 arithmetic: cosine min {cos.min():.5f} mean {cos.mean():.6f}; "
        f"the x86 worker here ({'VNNI' if 'avx512_vnni' in _host_flags() else 'AVX2, no VNNI: int16 saturation'}) "
        f"min {x86.min():.5f} mean {x86.mean():.6f}\n"
        f"  vs transformers fp32: arm min {arm_fp32.min():.4f} mean {arm_fp32.mean():.5f}, x86 min "
        f"{x86_fp32.min():.4f} mean {x86_fp32.mean():.5f}\n"
        f"  one request of all {len(SENTENCES)} vs one each on the device: min {moved.min():.4f} mean "
        f"{moved.mean():.5f}" + "".join(f"\n  below 0.999: {b}" for b in below)
    )
    # The device computes the bundle's int8 model exactly: what is left is fp32 rounding, which may flip one
    # activation's int8 step in a text (each such flip moves that text by up to ~0.01)
    assert cos.mean() >= 0.998
    assert cos.min() >= 0.98
    assert (arm_fp32 >= x86_fp32 - 0.01).all()  # and it is never less faithful to the source than this workstation
    assert moved.min() >= 0.95  # batch neighbours shift dynamic int8 scales (per call), not the meaning
    assert moved.mean() >= 0.985


def _host_flags() -> str:
    return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")


def test_an_llm_bundle_answers_and_its_logits_match_x86(
    device: EmulatedDevice, rpi5_on_a76: DeviceDaemon, built: Built
) -> None:
    from openai import OpenAI

    load = tursi("load", str(built.llm_bundle), env=rpi5_on_a76.env.vars)
    key = load.stdout.split("as artifact ", 1)[1].split()[0]
    port = free_port()
    rpi5_on_a76.up(key, "--name", "smol", "--port", str(port))
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=900)
    reply = client.chat.completions.create(model="smol", messages=PARIS, max_tokens=8, temperature=0)
    text = reply.choices[0].message.content
    assert reply.usage.completion_tokens >= 1
    assert text

    shutil.copy2(built.llm_gguf, device.host_path("/root/model.gguf"))
    shutil.copy2(ROOT / "tests/e2e/llama_logits.py", device.host_path("/root/llama_logits.py"))
    probe = ["/opt/tursi/venv/bin/python", "/root/llama_logits.py", "/root/model.gguf", PROMPT, "10"]
    arm = json.loads(device.run(probe, cpu=A76).stdout)
    x86 = built.x86_logits
    assert arm["prompt_tokens"] == x86["prompt_tokens"]
    assert "DOTPROD = 1" in arm["system_info"]  # the rpi5 pack's build
    arm_top5, x86_top5 = [t[0] for t in arm["top"][:5]], [t[0] for t in x86["top"][:5]]
    assert set(arm_top5) == set(x86_top5)
    arm_logit = {t[0]: t[1] for t in arm["top"]}
    worst = max(abs(arm_logit[tok] - logit) for tok, logit, _ in x86["top"][:5])
    assert worst < 0.5
    print(
        f"\nSmolLM2 Q4_0 (rpi5 plan) on emulated {A76} vs x86, same GGUF: top-5 {[t[2] for t in arm['top'][:5]]} "
        f"(same set; order {'same' if arm_top5 == x86_top5 else 'differs'}), largest logit gap {worst:.3f}\n"
        f"  reply on the device {text!r}; on x86 {built.x86_reply!r} "
        f"({'same text' if text == built.x86_reply else 'text differs: kernels round differently'})"
    )


def test_the_rpi5_pack_on_a_cortex_a72_is_refused_not_killed(
    device: EmulatedDevice, rpi5_on_a76: DeviceDaemon, built: Built, tmp_path: Path
) -> None:
    assert "asimddp" not in cpu_features(device, A72)
    # 1. the installer's check, before anything is installed
    proc = install_pack(device, built.packs["rpi5"], "/opt/never", A72, unpacked=False)
    assert proc.returncode == 69, proc.stdout + proc.stderr
    assert "asimddp" in proc.stderr
    assert "tursi pack --target rpi4" in proc.stderr
    assert not device.host_path("/opt/never").exists()
    # 2. an rpi5 install moved to a Pi 4 (the SD card case): the worker's CPU check, not SIGILL
    key = tursi("load", str(built.llm_bundle), env=rpi5_on_a76.env.vars).stdout.split("as artifact ", 1)[1].split()[0]
    stop_device_daemon(device, rpi5_on_a76)
    daemon = start_device_daemon(device, "/opt/tursi", A72, tmp_path / "tursid.log")
    try:
        up = daemon.up(key, "--name", "smol-a72", "--port", str(free_port()), "--restart", "no", check=False)
        assert up.returncode != 0
        assert "DOTPROD, which this CPU lacks" in up.stderr
        assert "tursi pack --target rpi4" in up.stderr
        logs = tursi("logs", "smol-a72", env=daemon.env.vars, check=False).stdout
        assert "exited: code=1" in logs  # a clean refusal: SIGILL would be code=-4 and qemu's "core dumped"
        assert "signal 4" not in logs + up.stderr
        assert "core dumped" not in logs + up.stderr
        assert ControlClient(daemon.env.vars["TURSI_HOST"]).healthy()  # tursid keeps running
        print(
            f"\nrpi5 pack under emulated {A72}, installer: {proc.stderr.strip().splitlines()[-1].strip()}\n"
            f"  worker: {next(line for line in up.stderr.splitlines() if 'DOTPROD' in line).strip()}"
        )
    finally:
        stop_device_daemon(device, daemon)
    rpi5_on_a76.handle = start_device_daemon(device, "/opt/tursi", A76, tmp_path / "tursid-a76.log").handle


AVX512 = {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}  # what x86-64-v4 asks of a CPU
CHAT_IN_NS = """
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key="unused", timeout=900)
reply = client.chat.completions.create(model="smol4", messages=json.loads(sys.argv[2]), max_tokens=4, temperature=0)
print(reply.choices[0].message.content)
"""


def _target_of(home: Path, key: str) -> str:
    """The hardware target the artifact ``key`` (a prefix will do) in ``home``'s cache was planned for."""
    (folder,) = [d for d in (home / "artifacts").iterdir() if d.name.startswith(key)]
    return str(json.loads((folder / "manifest.json").read_text())["plan"]["params"]["hardware_target"])


def _deployed_target(env: Env, name: str) -> str:
    return str(json.loads(tursi("inspect", name, env=env.vars).stdout)["manifest"]["plan"]["params"]["hardware_target"])


def test_one_registry_tag_gives_a_pi4_and_an_x86_device_each_its_own_build(
    device: EmulatedDevice, built: Built, smollm2_hf: Path, tmp_path: Path
) -> None:
    """Issue 19's fleet on a LAN of network namespaces: the workstation builds SmolLM2 for rpi4 and for this host's
    x86 level and pushes one multi-target tag to a real registry (TLS, htpasswd) on the LAN; an x86 "device" and the
    emulated Pi 4 (Cortex-A72, the rpi4 pack installed offline) each pull the tag for themselves with their daemon's
    own credentials and get the entry planned for their hardware; the Pi 4 serves its entry. (Which of several x86
    entries a host takes, the most specific that fits, is unit/test_registry_reference's: a third 135M conversion
    here would prove no more.)"""
    import bcrypt

    from tests.e2e.lan import LAN_HOST, in_ns, lan
    from tests.integration.registry_server import PASSWORD, USER, serving
    from tests.integration.test_registry_cli import isolated, login
    from tursi.core.hardware import detect
    from tursi.daemon.tls import ensure_self_signed

    with lan(2) as (x86_ns, arm_ns):
        base = tmp_path / "registry"
        cert, tls_key, _ = ensure_self_signed(base / "tls", LAN_HOST)
        (base / "htpasswd").write_text(
            f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
        )
        with serving(
            base, cert, tls_key, f"{{htpasswd: {{realm: tursi-lan, path: {base / 'htpasswd'}}}}}", LAN_HOST
        ) as reg:
            ref = f"{reg.netloc}/fleet/smollm2:q4"
            workstation = isolated(make_env(tmp_path / "workstation"))
            ws_daemon = DaemonProc(workstation).start()
            try:
                assert login(workstation, reg, PASSWORD).returncode == 0
                host_fits_v4 = AVX512 <= set(detect().features)
                expected = "x86-64-v4" if host_fits_v4 else "x86-64-v3"
                argv = ["build", str(smollm2_hf), "--target", f"rpi4,{expected}", "--bits", "4", "--push", ref]
                pushed = workstation.cli(*argv, check=True, timeout=1800).stdout
                assert "index sha256:" in pushed, pushed
            finally:
                ws_daemon.terminate()
                stop_everything_in(workstation.home)

            x86 = isolated(make_env(tmp_path / "x86"))  # tursid in its own namespace: it reaches only the LAN
            x86_daemon = DaemonProc(x86, command=in_ns(x86_ns, list(DAEMON))).start()
            try:
                assert login(x86, reg, PASSWORD, "--daemon").returncode == 0
                pulled = tursi("pull", ref, env=x86.vars).stdout
                key = pulled.split("artifact ")[1].split()[0]
                assert _target_of(x86.home, key) == expected
            finally:
                x86_daemon.terminate()
                stop_everything_in(x86.home)

            t0 = time.monotonic()
            proc = install_pack(device, built.packs["rpi4"], "/opt/tursi4", A72, unpacked=False)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            print(f"\nrpi4 pack installed offline under {A72} in {time.monotonic() - t0:.0f} s")
            pi4 = start_device_daemon(device, "/opt/tursi4", A72, tmp_path / "tursid.log", arm_ns, "/h4")
            try:
                seen = json.loads(tursi("system", "--format", "json", env=pi4.env.vars).stdout)["hardware"]
                assert "dotprod" not in seen["features"]  # this Pi 4's own tursid (the Pi 5's runs beside it)
                assert "neon" in seen["features"]
                isolated(pi4.env)  # the workstation's CLI for the Pi keeps no registry credentials
                assert login(pi4.env, reg, PASSWORD, "--daemon").returncode == 0
                port = free_port()
                pi4.up(ref, "--name", "smol4", "--port", str(port))  # the Pi's tursid pulls the tag itself
                assert _deployed_target(pi4.env, "smol4") == "rpi4"
                chat = [sys.executable, "-c", CHAT_IN_NS, f"http://127.0.0.1:{port}/v1", json.dumps(PARIS)]
                reply = subprocess.run(in_ns(arm_ns, chat), capture_output=True, text=True, timeout=900)
                assert reply.returncode == 0, reply.stderr[-2000:]
                assert reply.stdout.strip()
                info = device.run(
                    [
                        "/opt/tursi4/venv/bin/python",
                        "-c",
                        "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())",
                    ],
                    cpu=A72,
                )
                assert "DOTPROD" not in info.stdout
                assert "NEON = 1" in info.stdout
            finally:
                stop_device_daemon(device, pi4)
    print(
        f"{pushed.strip()}\n  x86 device ({'AVX-512' if host_fits_v4 else 'no AVX-512'}): {pulled.strip()}"
        f" -> {expected}"
    )
    print(f"  Pi 4 (Cortex-A72): rpi4 entry, answered {reply.stdout.strip()!r}; {info.stdout.strip()}")


def test_pack_manifest_and_library_floor(built: Built, tmp_path: Path) -> None:
    """The manifest lists every file with its sha256; the glibc floor is what the libraries really need."""
    from tursi.pack.elf import wheel_library_needs

    for target, pack in built.packs.items():
        with tarfile.open(pack) as tar:
            tar.extractall(tmp_path / target, filter="data")
        root = tmp_path / target / "tursi-pack"
        manifest = json.loads((root / "pack.json").read_text())
        llama = root / manifest["llama_cpp"]["wheel"]
        needs = wheel_library_needs(llama)
        assert needs.machine == "EM_AARCH64"
        assert manifest["glibc_floor"] == needs.glibc
        assert tuple(int(p) for p in needs.glibc.split(".")) <= (2, 35)  # Ubuntu 22.04 / JetPack 6
        assert manifest["target"] == target
        assert manifest["python"] == "3.11"
        assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == {
            *manifest["files"],
            "pack.json",
        }
        assert any(f.startswith("wheels/onnxruntime-") for f in manifest["files"])
        print(
            f"\n{target} pack: {pack.stat().st_size / 2**20:.1f} MiB, {len(manifest['files'])} files, "
            f"glibc >= {needs.glibc}, GLIBCXX >= {needs.glibcxx}, llama.cpp for {manifest['llama_cpp']['arm_arch']}"
        )
