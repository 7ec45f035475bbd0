"""Hub references through a local hub-shaped server (HF_ENDPOINT), the cache, offline mode and pickle refusal."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import DaemonProc, Env
from tests.hub_server import HubServer
from tests.integration.test_lifecycle import embed


@pytest.fixture
def hub_repos(tmp_path: Path, tiny_bert: Path) -> dict[str, Path]:
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy2(tiny_bert / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    remote = tmp_path / "remote-code"
    shutil.copytree(tiny_bert, remote)
    (remote / "config.json").write_text(
        (remote / "config.json")
        .read_text()
        .replace('"architectures"', '"auto_map": {"AutoModel": "modeling_x.XModel"}, "architectures"')
    )
    return {"tursi-test/tiny-bert": tiny_bert, "tursi-test/pickled": pickled, "tursi-test/remote": remote}


def hub_env(env: Env, hub: HubServer, offline: bool) -> None:
    env.vars.pop("HF_HUB_OFFLINE", None)
    env.vars["HF_ENDPOINT"] = hub.url
    env.vars["HF_HOME"] = str(env.home.parent / "hf-home")
    if offline:
        env.vars["HF_HUB_OFFLINE"] = "1"


def test_hub_id_deploys_then_works_offline_from_the_cache(env: Env, hub_repos: dict[str, Path]) -> None:
    with HubServer(hub_repos) as hub:
        hub_env(env, hub, offline=False)
        daemon = DaemonProc(env).start()
        proc = env.cli("up", "tursi-test/tiny-bert", "--name", "hubbed", "--revision", "main")
        assert proc.returncode == 0, proc.stderr
        assert any(r.startswith("GET tursi-test/tiny-bert/model.safetensors") for r in hub.requests)
        (dep,) = env.ps()
        assert dep["model"] == "tursi-test/tiny-bert"
        assert embed(dep["endpoint"], ["from the hub"]).shape == (1, 32)
        pickled = env.cli("up", "tursi-test/pickled")
        assert pickled.returncode == 65
        assert "only pickle weights" in pickled.stderr
        assert "--allow-pickle" in pickled.stderr
        assert not any("pytorch_model.bin" in r for r in hub.requests)  # refused before downloading it
        remote = env.cli("up", "tursi-test/remote")
        assert remote.returncode == 65
        assert "remote code" in remote.stderr
        missing = env.cli("up", "tursi-test/nope")
        assert missing.returncode == 66
        daemon.terminate()
    # the server is gone: offline mode serves the same id from the populated cache
    hub_env(env, hub, offline=True)
    DaemonProc(env).start()
    env.cli("down", "--all", check=True)
    again = env.cli("up", "tursi-test/tiny-bert", "--name", "offline")
    assert again.returncode == 0, again.stderr
    (dep,) = env.ps()
    assert embed(dep["endpoint"], ["no network"]).shape == (1, 32)
