"""Registry references as Docker writes them, and the credentials Tursi keeps or reads from Docker's config."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from tursi.core.errors import InvalidSpec
from tursi.registry.credentials import CredentialStore, RegistryAuth
from tursi.registry.reference import Reference, is_reference, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/models/minilm:rpi5", Reference("127.0.0.1:5000", "models/minilm", "rpi5")),
        ("registry.lan/minilm", Reference("registry.lan", "minilm", "latest")),
        ("localhost/a/b/c:v1.2-x", Reference("localhost", "a/b/c", "v1.2-x")),
        (f"ghcr.io/org/model@{DIGEST}", Reference("ghcr.io", "org/model", None, DIGEST)),
        ("registry.lan:443/m", Reference("registry.lan:443", "m", "latest")),
    ],
)
def test_references(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected
    assert is_reference(text)


@pytest.mark.parametrize("text", ["org/name", "minilm", "./model.gguf", "/abs/model.gguf", "smollm2"])
def test_what_is_not_a_reference(text: str) -> None:
    """Hub ids, aliases and paths keep their meaning: a reference names its registry."""
    assert not is_reference(text)
    with pytest.raises(InvalidSpec, match="not a registry reference"):
        parse_reference(text)


@pytest.mark.parametrize(
    "text",
    ["reg.lan/Upper/case", "reg.lan/m@sha256:short", "reg.lan/m:bad tag", "reg.lan/-m", "reg.lan/m:" + "t" * 200],
)
def test_malformed_references_say_what_is_wrong(text: str) -> None:
    with pytest.raises(InvalidSpec, match="repository|digest|tag"):
        parse_reference(text)


def test_credentials_are_kept_0600_and_docker_config_is_read(tmp_path: Path) -> None:
    docker = tmp_path / "docker" / "config.json"
    docker.parent.mkdir()
    docker.write_text(json.dumps({"auths": {"ghcr.io": {"auth": base64.b64encode(b"bob:s3cr:et").decode()}}}))
    store = CredentialStore(tmp_path / "tursi" / "registries.json", docker)
    assert store.get("ghcr.io") == RegistryAuth("bob", "s3cr:et")  # split on the first colon, as Docker does
    assert store.get("other.lan") == RegistryAuth()
    store.save("reg.lan:5000", RegistryAuth("me", "pw", "/ca.pem"))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.get("reg.lan:5000") == RegistryAuth("me", "pw", "/ca.pem")
    assert store.remove("reg.lan:5000")
    assert not store.remove("reg.lan:5000")


def test_a_multi_target_tag_picks_the_entry_that_fits_or_says_why_none_does() -> None:
    from tursi.core.errors import TargetMismatch
    from tursi.core.hardware import load_target
    from tursi.registry.artifacts import PROFILE, choose, platform_of

    def entry(name: str) -> dict[str, object]:
        return {"digest": name, "platform": platform_of(load_target(name).arch), "annotations": {PROFILE: name}}

    offered = [entry("rpi5"), entry("x86-64-v3"), entry("x86-64-v4")]
    ref = parse_reference("reg.lan/m:v1")
    assert choose(ref, offered, load_target("rpi5"))["digest"] == "rpi5"
    assert choose(ref, offered, load_target("x86-64-v4"))["digest"] == "x86-64-v4"  # the most specific that fits
    assert choose(ref, offered, load_target("x86-64-v3"))["digest"] == "x86-64-v3"
    with pytest.raises(TargetMismatch, match="rpi5: planned for rpi5 with dotprod"):
        choose(ref, offered, load_target("rpi4"))
    assert platform_of("aarch64") == {"os": "linux", "architecture": "arm64", "variant": "v8"}
