"""Compose files: interpolation, the mapping of ``models:`` entries to deployment specs, errors that name the key
path and what is allowed, the configuration hash `up` compares, and the plan `up` makes from tursid's list."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from tursi.compose.converge import CREATE, KEEP, RECREATE, REMOVE, plan_up
from tursi.compose.entry import x_tursi_keys
from tursi.compose.interpolation import interpolate
from tursi.compose.project import (
    HASH_LABEL,
    PROJECT_LABEL,
    ComposeProject,
    load_project,
    normalize_project_name,
    project_name,
    request_body,
)
from tursi.compose.source import MAX_BYTES, find_file
from tursi.core.errors import DeploymentExists, InvalidSpec
from tursi.core.spec import field_names

KEY = "k" * 20
ENV = {"PORT": "8081", "EMPTY": "", "CHAT_KEY": KEY, "OTHER_KEY": "o" * 20}


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None, name: str = "compose.yaml") -> ComposeProject:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_project(path, ENV if env is None else env)


def options(tmp_path: Path, entry: str) -> dict[str, Any]:
    """The options of a file's only model ``m``, whose entry is ``entry`` (YAML, indented under ``m:``)."""
    body = textwrap.indent(textwrap.dedent(entry), "    ")
    (model,) = load(tmp_path, f"models:\n  m:\n{body}").models
    return model.options


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$PORT", "8081"),
        ("${PORT}", "8081"),
        ("x${NOPE:-8080}y", "x8080y"),
        ("${EMPTY:-d}", "d"),  # :- also replaces an empty value
        ("${EMPTY-d}", ""),  # - only an unset one
        ("${NOPE-}", ""),
        ("$$PORT", "$PORT"),
        ("a $$ b", "a $ b"),
        ("${PORT:?set it}", "8081"),
        ("no dollar", "no dollar"),
    ],
)
def test_interpolation(text: str, expected: str) -> None:
    assert interpolate(text, ENV, "p") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${NOPE}", "models.m.x: variable NOPE is not set (give it a default: ${NOPE:-value})"),
        ("$NOPE", "variable NOPE is not set"),
        ("${NOPE:?the port}", "models.m.x: variable NOPE is required: the port"),
        ("${EMPTY:?}", "variable EMPTY is required"),
        ("$", "'$' must start $VAR"),
        ("${PORT", "'$' must start $VAR"),
        ("${PORT x}", "'$' must start $VAR"),
        ("$1", "'$' must start $VAR"),
    ],
)
def test_bad_interpolation_names_the_variable_and_path(text: str, message: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        interpolate({"models": {"m": {"x": text}}}, ENV)
    assert message in e.value.detail


def test_interpolation_walks_lists_and_stops_at_alias_bombs(tmp_path: Path) -> None:
    assert interpolate({"a": ["$PORT", 1, None]}, ENV) == {"a": ["8081", 1, None]}
    bomb = "x-0: &l0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"x-{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)
    )  # 9**9 strings once expanded, in a file of 600 bytes
    with pytest.raises(InvalidSpec, match="expands to over"):
        load(tmp_path, bomb + "models: {m: {model: minilm, x-bomb: *l8}}\n")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("model: minilm", {}),
        ("model: m\ncontext_size: 2048", {"ctx_size": 2048}),
        ("model: m\nruntime_flags: [--ctx-size, '1024', -t, '2']", {"ctx_size": 1024, "threads": 2}),
        ("model: m\nruntime_flags: ['--parallel=3', '-np 2 --port 9000']", None),  # parallel twice: error below
        ("model: m\nruntime_flags: ['-c=512', '--host 0.0.0.0']", {"ctx_size": 512, "host": "0.0.0.0"}),
        ("model: m\nx-tursi: {port: $PORT, bits: '4', pin: 'true'}", {"port": 8081, "bits": 4, "pin": True}),
        ("model: m\nx-tursi: {rate-limit: 5/s, keep-alive: 0}", {"rate_limit": "5/second", "keep_alive": "0s"}),
        ("model: m\nx-tursi: {restart: no}", {"restart": "no"}),  # YAML 1.2, as Compose: `no` is text
        ("model: m\nx-tursi: {health_interval: 2, threads: 3}", {"threads": 3, "health_interval": 2.0}),
        (
            "model: m\nx-tursi: {labels: {a: x, n: 2, on: true, e: }}",
            {"labels": {"a": "x", "n": "2", "on": "true", "e": ""}},
        ),
        ("model: m\nx-tursi: {labels: [team=a, b=c=d]}", {"labels": {"team": "a", "b": "c=d"}}),
        ("model: m\nx-other: ignored", {}),
    ],
)
def test_entries_map_to_spec_options(tmp_path: Path, entry: str, expected: dict[str, Any] | None) -> None:
    if expected is None:
        with pytest.raises(InvalidSpec, match="parallel is already set at models.m.runtime_flags"):
            options(tmp_path, entry)
        return
    got = options(tmp_path, entry)
    assert got.pop("model") in ("m", "minilm")
    assert got == expected


def test_local_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "w.gguf").write_bytes(b"GGUF")
    (tmp_path / "calib.txt").write_text("a\nb\n")
    got = options(tmp_path, "model: ./w.gguf\nx-tursi: {calibration: calib.txt}")
    assert got == {"model": str(tmp_path / "w.gguf"), "calibration": str(tmp_path / "calib.txt")}
    assert options(tmp_path, "model: minilm")["model"] == "minilm"  # an alias wins, as in tursid
    assert options(tmp_path, "model: org/repo")["model"] == "org/repo"  # not here: sent as written


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "the top level must be a mapping"),
        ("models: {}\nservice: {}\n", "service: unknown top-level key; allowed: name, models, version, services"),
        ("name: a\nname: b\nmodels: {}\n", "duplicate key 'name' at line 2"),
        ("models: [a]\n", "models must be a mapping"),
        ("name: x\n", "no models: section"),
        ("models: {a: {model: x}\n", "is not valid YAML"),
        ("models:\n  Chat_Model: {model: x}\n", "models.Chat_Model: a model's key is its deployment name and must"),
        ("name: '!!!'\nmodels: {}\n", "project name '!!!' has no letter or digit left"),
        # issue 28 (low): each was exit 70, an internal error
        ("models: {? [a, b] : {model: x}}\n", "a key at line 1 is a sequence: keys are names"),
        ("models: " + "{a: " * 5000 + "x" + "}" * 5000 + "\n", "nests deeper than 64 levels"),
        ("models: " + "{a: " * 100 + "x" + "}" * 100 + "\n", "nests deeper than 64 levels"),
    ],
)
def test_file_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        load(tmp_path, text)
    assert message in e.value.detail


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("smollm2", "models.chat must be a mapping with model:"),
        ("{context_size: 5}", "models.chat.model is required"),
        ("{model: x, image: y}", "models.chat.image: unknown key; allowed: model, context_size"),
        ("{model: x, x-tursi: {bitz: 4}}", "models.chat.x-tursi.bitz: unknown key; allowed: port, host"),
        ("{model: x, x-tursi: {name: y}}", "models.chat.x-tursi.name: unknown key"),
        ("{model: x, x-tursi: {bits: 5}}", "models.chat.x-tursi.bits: bits must be 4 or 8"),
        ("{model: x, x-tursi: {port: http}}", "models.chat.x-tursi.port: port must be an integer from 1"),
        ("{model: x, x-tursi: {pin: yes}}", "models.chat.x-tursi.pin: 'pin' must be true or false"),
        ("{model: x, context_size: 8}", "models.chat.context_size: ctx_size must be an integer from 16"),
        ("{model: x, x-tursi: {keep_alive: soon}}", "models.chat.x-tursi.keep_alive: keep_alive: "),
        ("{model: x, x-tursi: {restart: sometimes}}", "models.chat.x-tursi.restart: "),
        ("{model: x, x-tursi: []}", "models.chat.x-tursi must be a mapping of port, host"),
        ("{model: x, x-tursi: {api_key: sekrit-sekrit-sekrit}}", "never written in the file: use api_key_env"),
        (
            "{model: x, runtime_flags: [--temp, '0.7']}",
            "flags[0]: unknown runtime flag '--temp'; allowed: --ctx",
        ),
        ("{model: x, runtime_flags: [--api-key=abc]}", "never written in the file"),
        ("{model: x, runtime_flags: [--ctx-size]}", "models.chat.runtime_flags[0]: --ctx-size needs a value"),
        ("{model: x, runtime_flags: --ctx-size 5}", "models.chat.runtime_flags must be a list"),
        ("{model: x, context_size: 64, runtime_flags: [-c, '32']}", "ctx_size is already set at models.chat.context_s"),
        (
            "{model: x, x-tursi: {ctx_size: 64, ctx-size: 32}}",
            "ctx_size is already set at models.chat.x-tursi.ctx_size",
        ),
        ("{model: x, x-tursi: {labels: {com.tursi.compose.project: p}}}", "are Tursi's own"),
        ("{model: x, x-tursi: {labels: {bad key: v}}}", "x-tursi.labels: labels takes at most 32 KEY=VALUE pairs"),
        ("{model: x, x-tursi: {port: '${NOPE}'}}", "models.chat.x-tursi.port: variable NOPE is not set"),
        ("{model: x, x-tursi: {api_key_env: NOPE}}", "models.chat.x-tursi.api_key_env: variable NOPE is not set"),
        ("{model: x, x-tursi: {api_key_env: EMPTY}}", "variable EMPTY is not set"),
        ("{model: x, x-tursi: {api_key_file: nope.txt}}", "x-tursi.api_key_file: cannot read 'nope.txt'"),
        ("{model: x, x-tursi: {api_key_env: PORT}}", "the key in PORT is too weak: --api-key needs at least 16"),
        ("{model: x, x-tursi: {api_key_env: A, api_key_file: f}}", "give api_key_env or api_key_file, not both"),
    ],
)
def test_entry_errors_name_the_key_path_and_what_is_allowed(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        load(tmp_path, f"models:\n  chat: {entry}\n")
    assert message in e.value.detail


def test_x_tursi_takes_every_spec_option_but_model_name_and_the_key() -> None:
    assert set(x_tursi_keys()) == set(field_names()) - {"model", "name", "api_key"} | {"api_key_env", "api_key_file"}


def test_other_compose_sections_are_warned_about_and_not_interpolated(tmp_path: Path) -> None:
    proj = load(tmp_path, "version: '3'\nservices: {app: {image: '${UNSET}'}}\nx-mine: 1\nmodels: {m: {model: x}}\n")
    assert proj.warnings == ("services: not used by Tursi, which deploys only the models: section (ignored)",)


def test_a_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="is over 1024 KiB"):
        load(tmp_path, "# " + "x" * MAX_BYTES + "\nmodels: {}\n")


def test_the_key_comes_from_the_environment_or_a_file_and_never_shows(tmp_path: Path) -> None:
    (tmp_path / "key.txt").write_text("f" * 24 + "\n")
    proj = load(
        tmp_path,
        "models:\n  a: {model: x, x-tursi: {api_key_env: CHAT_KEY}}\n"
        "  b: {model: x, x-tursi: {api-key-file: key.txt}}\n",
    )
    a, b = proj.models
    assert (a.api_key, b.api_key) == (KEY, "f" * 24)
    assert request_body(a, "p")["api_key"] == KEY  # sent to tursid, which keeps only its sha256
    shown = repr(proj) + repr(proj.normalized())
    assert KEY not in shown
    assert "f" * 24 not in shown
    assert proj.normalized()["models"]["a"] == {"model": "x", "x-tursi": {"api_key_env": "CHAT_KEY"}}


def hash_of(tmp_path: Path, entry: str, env: dict[str, str] | None = None) -> str:
    body = textwrap.indent(textwrap.dedent(entry), "    ")
    return load(tmp_path, f"models:\n  m:\n{body}", env).models[0].config_hash


def test_the_hash_follows_what_runs_not_how_it_is_written(tmp_path: Path) -> None:
    same = [
        "model: smollm2\ncontext_size: 1024\nx-tursi: {rate_limit: 60/minute}",
        "model: smollm2\nruntime_flags: ['--ctx-size=1024']\nx-tursi: {rate-limit: 60/min}",
        "model: smollm2\nx-tursi: {ctx-size: '${CTX:-1024}', rate_limit: 60 / m}",
    ]
    assert len({hash_of(tmp_path, e) for e in same}) == 1
    base = hash_of(tmp_path, same[0])
    for changed in (
        "model: smollm2\ncontext_size: 2048\nx-tursi: {rate_limit: 60/minute}",
        "model: smollm2\ncontext_size: 1024\nx-tursi: {rate_limit: 60/minute, labels: {a: b}}",
        "model: smollm2\ncontext_size: 1024\nx-tursi: {rate_limit: 60/minute, api_key_env: CHAT_KEY}",
    ):
        assert hash_of(tmp_path, changed) != base
    keyed = "model: x\nx-tursi: {api_key_env: CHAT_KEY}"
    assert hash_of(tmp_path, keyed) != hash_of(tmp_path, keyed, {**ENV, "CHAT_KEY": "z" * 20})  # rotated: redeploy
    assert hash_of(tmp_path, keyed) == hash_of(tmp_path, keyed.replace("CHAT_KEY", "OTHER_KEY"), {"OTHER_KEY": KEY})


@pytest.mark.parametrize(
    ("raw", "name"),
    [("My App", "myapp"), ("my_app-2", "my_app-2"), ("_x.y", "xy"), ("ÜBER", "ber"), ("Tursi", "tursi")],
)
def test_project_names_are_normalized_as_compose_does(raw: str, name: str) -> None:
    assert normalize_project_name(raw) == name


def test_the_project_name_comes_from_p_then_name_then_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "My Project"
    folder.mkdir()
    (folder / "compose.yaml").write_text("models: {m: {model: x, x-tursi: {api_key_env: UNSET}}}\n")
    path = find_file(None, folder)
    assert project_name(path, {}) == "myproject"  # the models need not be valid to name the project
    assert project_name(path, {}, "Given") == "given"
    (folder / "compose.yaml").write_text("name: ${P:-fromfile}\nmodels: {}\n")
    assert project_name(path, {}) == "fromfile"
    assert load_project(path, {"P": "env"}).name == "env"


def test_default_file_names_in_order(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="no compose file in"):
        find_file(None, tmp_path)
    for name in ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml"):
        (tmp_path / name).write_text("models: {}\n")
        assert find_file(None, tmp_path) == tmp_path / name
    assert find_file("docker-compose.yml", tmp_path) == tmp_path / "docker-compose.yml"
    with pytest.raises(InvalidSpec, match="compose file 'other.yaml' not found"):
        find_file("other.yaml", tmp_path)


def deployment(name: str, project: str | None, config_hash: str = "", status: str = "running") -> dict[str, Any]:
    labels = {PROJECT_LABEL: project, HASH_LABEL: config_hash} if project else {"team": "x"}
    return {"name": name, "status": status, "options": {"labels": labels}}


def test_up_plans_only_what_changed(tmp_path: Path) -> None:
    proj = load(tmp_path, "name: p\nmodels:\n  a: {model: x}\n  b: {model: y}\n  c: {model: z}\n  d: {model: w}\n")
    a, b, c, _ = proj.models
    deps = [
        deployment("a", "p", a.config_hash),
        deployment("b", "p", "stale"),
        deployment("c", "p", c.config_hash, status="exited"),
        deployment("gone", "p"),
        deployment("theirs", "q"),
        deployment("plain", None),
    ]
    plan = [(x.kind, x.name) for x in plan_up(proj, deps)]
    assert plan == [(REMOVE, "gone"), (KEEP, "a"), (RECREATE, "b"), (RECREATE, "c"), (CREATE, "d")]
    body = request_body(b, "p")
    assert body["labels"] == {PROJECT_LABEL: "p", HASH_LABEL: b.config_hash}
    assert (body["name"], body["model"]) == ("b", "y")


@pytest.mark.parametrize(
    ("owner", "message"),
    [("q", "belongs to compose project 'q'"), (None, "was not made by compose")],
)
def test_up_refuses_a_name_another_project_or_plain_up_holds(tmp_path: Path, owner: str | None, message: str) -> None:
    proj = load(tmp_path, "name: p\nmodels: {a: {model: x}}\n")
    with pytest.raises(DeploymentExists, match=message):
        plan_up(proj, [deployment("a", owner)])


def test_yaml_merge_keys_merge_as_compose_merges_them(tmp_path: Path) -> None:
    """Issue 28 (low): ``<<: *anchor``, common in Compose files, was refused as "not valid YAML". The mapping's own
    keys win over merged ones (not a duplicate), as in Compose; a key written twice in one mapping still is."""
    text = textwrap.dedent(
        """\
        x-defaults: &defaults
          model: minilm
          x-tursi: {threads: 2, rate-limit: 5/s}
        models:
          a:
            <<: *defaults
          b:
            <<: *defaults
            x-tursi: {threads: 3}
        """
    )
    got = {model.name: model.options for model in load(tmp_path, text).models}
    assert got["a"] == {"model": "minilm", "threads": 2, "rate_limit": "5/second"}
    assert got["b"] == {"model": "minilm", "threads": 3}  # its own x-tursi replaces the merged one whole
    with pytest.raises(InvalidSpec, match="duplicate key 'model'"):
        load(tmp_path, "models:\n  a:\n    model: x\n    model: y\n")
