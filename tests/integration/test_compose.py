"""`tursi compose` against a real tursid: an embedding model and a chat model come up from one file and answer;
`up` again changes nothing; editing one model's options redeploys only that one; a model removed from the file is
removed; `down` removes only the project's deployments, never another project's or a plain `tursi up`'s."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI, DaemonProc, Env
from tests.integration.test_lifecycle import embed, free_port

pytestmark = pytest.mark.usefixtures("seeded_tiny_bert")  # conversion is not the point here: start from the cache

CHAT_KEY = "tsk_compose-test-key-0123456789"
PROJECT_LABEL = "com.tursi.compose.project"


EMBED = """\
  embed:
    model: {tiny_bert}
    x-tursi:
      labels: {{team: search}}
"""
CHAT = """\
  chat:
    model: smollm2
    context_size: ${CHAT_CTX:-512}
    runtime_flags: [--threads, "2", -np, "1"]
    x-tursi:
      api_key_env: CHAT_KEY
      keep-alive: forever
"""


def compose_file(folder: Path, tiny_bert: Path, *, with_embed: bool = True) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "compose.yaml"
    path.write_text("name: demo\nmodels:\n" + (EMBED.format(tiny_bert=tiny_bert) if with_embed else "") + CHAT)
    return path


def chat(endpoint: str, key: str | None) -> int:
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0}
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(f"{endpoint}/chat/completions", json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert json.loads(resp.read())["choices"][0]["message"]["role"] == "assistant"
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code


def pids(env: Env) -> dict[str, Any]:
    return {d["name"]: d["pid"] for d in env.ps()}


def test_compose_converges_only_what_changed(env: Env, daemon: DaemonProc, tiny_bert: Path, tmp_path: Path) -> None:
    env.vars["CHAT_KEY"] = CHAT_KEY
    path = compose_file(tmp_path / "app", tiny_bert)
    f = ("-f", str(path))
    env.cli("up", str(tiny_bert), "--name", "plain", "--port", str(free_port()), check=True)  # no project
    other = tmp_path / "other.yaml"
    other.write_text(f"models:\n  other-embed: {{model: {tiny_bert}}}\n")
    env.cli("compose", "-f", str(other), "-p", "other", "up", check=True)

    first = env.cli("compose", *f, "up", check=True)
    assert "embed is ready: http://127.0.0.1:" in first.stdout
    assert "chat is ready: http://127.0.0.1:" in first.stdout
    deps = {d["name"]: d for d in env.ps()}
    assert {n: (d["options"]["labels"] or {}).get(PROJECT_LABEL) for n, d in deps.items()} == {
        "plain": None,
        "other-embed": "other",
        "embed": "demo",
        "chat": "demo",
    }
    assert deps["embed"]["options"]["labels"]["team"] == "search"
    assert deps["chat"]["options"]["ctx_size"] == 512
    assert embed(deps["embed"]["endpoint"], ["composed"]).shape == (1, 32)
    assert chat(deps["chat"]["endpoint"], CHAT_KEY) == 200
    assert chat(deps["chat"]["endpoint"], None) == 401  # the key from CHAT_KEY protects it
    before = pids(env)

    again = env.cli("compose", *f, "up", check=True)
    assert again.stdout.splitlines() == ["embed is up to date", "chat is up to date"]
    assert pids(env) == before

    env.vars["CHAT_CTX"] = "1024"  # one model's options change: only that one is redeployed
    edited = env.cli("compose", *f, "up", check=True)
    assert "chat is redeployed (configuration changed)" in edited.stdout
    assert "embed is up to date" in edited.stdout
    after = pids(env)
    assert after["embed"] == before["embed"]
    assert after["plain"] == before["plain"]
    assert after["chat"] != before["chat"]
    assert {d["name"]: d for d in env.ps()}["chat"]["options"]["ctx_size"] == 1024

    compose_file(tmp_path / "app", tiny_bert, with_embed=False)  # removed from the file: removed by up
    removed = env.cli("compose", *f, "up", check=True)
    assert "embed removed (not in the file)" in removed.stdout
    assert set(pids(env)) == {"plain", "other-embed", "chat"}
    assert pids(env)["chat"] == after["chat"]

    project_ps = json.loads(env.cli("compose", *f, "ps", "--format", "json", check=True).stdout)
    assert [d["name"] for d in project_ps] == ["chat"]
    logs = env.cli("compose", *f, "logs", check=True).stdout.splitlines()
    assert logs
    assert all(line.startswith("chat | ") for line in logs)

    following = subprocess.Popen([*CLI, "compose", *f, "logs", "-f"], env=env.vars, stdout=subprocess.PIPE, text=True)
    assert following.stdout is not None
    assert following.stdout.readline().startswith("chat | ")  # following before the deployment goes
    env.cli("compose", *f, "down", check=True)
    assert set(pids(env)) == {"plain", "other-embed"}  # another project's and a plain up's stay
    following.communicate(timeout=30)  # a followed stream ends when its deployment is gone
    assert following.returncode == 0


def test_a_name_held_outside_the_project_is_refused(
    env: Env, daemon: DaemonProc, tiny_bert: Path, tmp_path: Path
) -> None:
    env.cli("up", str(tiny_bert), "--name", "embed", check=True)
    path = tmp_path / "compose.yaml"
    path.write_text(f"models:\n  embed: {{model: {tiny_bert}}}\n  more: {{model: {tiny_bert}}}\n")
    proc = env.cli("compose", "-f", str(path), "up")
    assert proc.returncode == 73, proc.stderr
    assert "a deployment named 'embed' exists and was not made by compose" in proc.stderr
    assert [d["name"] for d in env.ps()] == ["embed"]  # refused before anything changed
    nothing = env.cli("compose", "-p", "nothing", "ps", "--format", "json", check=True)  # -p needs no file
    assert json.loads(nothing.stdout) == []

    valid = env.cli("compose", "-f", str(path), "config")  # config checks the file only, not the daemon
    assert valid.returncode == 0, valid.stderr
    path.write_text("models:\n  chat: {model: smollm2, x-tursi: {bitz: 4}}\n")
    proc = env.cli("compose", "-f", str(path), "config")
    assert proc.returncode == 64
    assert proc.stderr.startswith("Error: models.chat.x-tursi.bitz: unknown key; allowed: port, host")
    assert "Traceback" not in proc.stderr
