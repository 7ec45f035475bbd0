"""The deployment spec, field by field: `tursi up`'s options, the control API's OpenAPI request schema and the
request parser all say what tursi.core.spec declares; a spec survives being stored and being handed to a worker."""

from __future__ import annotations

from dataclasses import Field, replace
from pathlib import Path
from typing import Any

import click
import pytest

from tursi.cli.bundles import build_cmd
from tursi.cli.spec_options import KeyValue, request_body
from tursi.cli.up import up_cmd
from tursi.core.errors import InvalidSpec
from tursi.core.spec import GROUPS, KINDS, PAIR_VALUE, DeploymentSpec, field_names, option_of, spec_fields
from tursi.core.worker_settings import WorkerSettings
from tursi.http.openapi import control

FIELDS = {f.name: f for f in spec_fields()}
CALIBRATION = str(Path(__file__))  # any readable file
# A valid value for each free-text field (the others get theirs from their range or choices).
TEXT_EXAMPLES = {
    "model": "minilm",
    "name": "my-model.v2",
    "host": "0.0.0.0",
    "target": "rpi5",
    "revision": "refs/pr/1",
    "rate_limit": "100/minute;burst=20",
    "restart": "on-failure:3",
    "keep_alive": "5400s",
    "api_key": "auto",
    "calibration": CALIBRATION,
}
# What the parser answered before the spec existed (tests and users rely on these words).
MESSAGES = [
    ({}, "model", "'model' is required: an alias, a folder, a file, a hub id or an artifact key"),
    ({"name": "Bad Name!"}, "name", "--name must match [a-z0-9][a-z0-9._-]{0,63}"),
    ({"port": 70000}, "port", "--port must be an integer from 1 to 65535"),
    ({"host": 5}, "host", "'host' must be an address"),
    ({"quantization": "magic"}, "quantization", "--quantization must be 'dynamic' or 'static'"),
    ({"bits": 3}, "bits", "--bits must be 4 or 8"),
    ({"bits": True}, "bits", "--bits must be 4 or 8"),
    ({"max_queue": 5000}, "max_queue", "--max-queue must be an integer from 0 to 4096"),
    ({"max_batch": 0}, "max_batch", "--max-batch must be an integer from 1 to 1024"),
    ({"batch_wait_ms": 1001}, "batch_wait_ms", "--batch-wait-ms must be a number from 0 to 1000"),
    ({"target": 5}, "target", "--target must be a profile name"),
    ({"min_quality": 2}, "min_quality", "--min-quality must be a number from 0 to 1"),
    ({"calibration": "/no/such"}, "calibration", "--calibration '/no/such' is not a readable file"),
    ({"revision": "a b"}, "revision", "--revision must be a branch, tag or commit"),
    ({"allow_pickle": "yes"}, "allow_pickle", "'allow_pickle' must be true or false"),
    ({"rate_limit": 5}, "rate_limit", "--rate-limit must be a string like 100/minute"),
    ({"rate_limit": "lots"}, "rate_limit", "--rate-limit 'lots' is not N/second|minute|hour[;burst=M]"),
    ({"restart": 5}, "restart", "--restart must be a string"),
    ({"restart": "sometimes"}, "restart", "--restart 'sometimes' must be no, on-failure[:N], always or unless"),
    ({"health_interval": 0}, "health_interval", "--health-interval must be a number >= 0.1"),
    ({"health_start_period": -1}, "health_start_period", "--health-start-period must be a number >= 0.0"),
    ({"keep_alive": 5}, "keep_alive", "--keep-alive must be a duration like 30s, 5m, 1h, 0 or forever"),
    ({"keep_alive": "soon"}, "keep_alive", "--keep-alive: 'soon' is not a duration"),
    ({"keep_alive": "400d"}, "keep_alive", "--keep-alive: '400d' is not a duration"),
    ({"pin": "yes"}, "pin", "'pin' must be true or false"),
    ({"replicas": 0}, "replicas", "--replicas must be an integer from 1 to 16"),
    ({"restart_on_unhealthy": 1}, "restart_on_unhealthy", "'restart_on_unhealthy' must be true or false"),
    ({"api_key": 5}, "api_key", "--api-key must be a string or 'auto'"),
    ({"api_key": "short"}, "api_key", "--api-key needs at least 16 characters and no spaces, or 'auto'"),
    ({"labels": {"a b": "c"}}, "labels", "--label takes at most 32 KEY=VALUE pairs: KEY matching [A-Za-z0-9]"),
]


def valid_value(f: Field[Any]) -> Any:
    opt = option_of(f)
    if opt.kind in ("str", "file"):
        return TEXT_EXAMPLES[f.name]
    if opt.kind == "choice":
        return opt.choices[-1]
    if opt.kind == "bool":
        return True
    if opt.kind == "pairs":
        return {"team": "ml", "tursi.dev/stage": "prod = eu-1"}
    return opt.maximum if opt.maximum is not None else opt.minimum + 1


def invalid_values(f: Field[Any]) -> list[Any]:
    """A value of the wrong JSON type, and values just outside the declared range."""
    opt = option_of(f)
    wrong_type = {"str": 5, "file": "/no/such/file", "int": "7", "float": "x", "bool": "yes", "choice": "nope"}
    if opt.kind == "pairs":  # a string, a value that is not text, a key or value out of bounds, one pair too many
        too_many = {f"k{i}": "v" for i in range(int(opt.maximum or 0) + 1)}
        return ["team=ml", {"team": 5}, {"bad key": "v"}, {"-x": "v"}, {"k": "a\x1bb"}, {"k": "v" * 257}, too_many]
    values = [wrong_type[opt.kind]]
    if opt.kind in ("int", "float"):
        step = 1 if opt.kind == "int" else 0.01
        if opt.maximum is not None:
            values.append(opt.maximum + step)
        if opt.minimum - step != opt.auto:
            values.append(opt.minimum - step)
    if opt.kind == "int":
        values.append(2.5)
    if opt.pattern is not None:
        values.append("no spaces allowed here!")
    return values


def body_with(name: str, value: Any) -> dict[str, Any]:
    return {"model": "minilm", name: value}


@pytest.mark.parametrize("name", list(FIELDS))
def test_a_valid_value_parses(name: str) -> None:
    f = FIELDS[name]
    value = valid_value(f)
    parsed = getattr(DeploymentSpec.parse(body_with(name, value)), name)
    if name == "api_key":
        assert parsed.startswith("tsk_")  # 'auto' made one
    elif name == "rate_limit":
        assert parsed == "100/minute;burst=20"
    else:
        assert parsed == value


@pytest.mark.parametrize("name", [n for n, f in FIELDS.items() if not option_of(f).required])
def test_absent_or_null_is_the_default(name: str) -> None:
    default = FIELDS[name].default
    assert getattr(DeploymentSpec.parse({"model": "m", name: None}), name) == default
    assert getattr(DeploymentSpec.parse({"model": "m"}), name) == default


@pytest.mark.parametrize("name", list(FIELDS))
def test_an_invalid_value_is_a_400_naming_the_field(name: str) -> None:
    for value in invalid_values(FIELDS[name]):
        with pytest.raises(InvalidSpec) as caught:
            DeploymentSpec.parse(body_with(name, value))
        problem = caught.value.to_problem()
        assert (problem["status"], problem["code"], problem["param"]) == (400, "invalid_spec", name), value
        assert option_of(FIELDS[name]).flag(name) in problem["detail"] or name in problem["detail"]


@pytest.mark.parametrize(("body", "param", "message"), MESSAGES)
def test_messages_are_those_of_before(body: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        DeploymentSpec.parse({"model": "minilm", **body} if param != "model" else body)
    problem = caught.value.to_problem()
    assert problem["param"] == param
    assert problem["detail"].startswith(message)


def test_every_field_is_of_a_known_group_and_kind() -> None:
    assert {(option_of(f).group in GROUPS, option_of(f).kind in KINDS) for f in FIELDS.values()} == {(True, True)}
    assert [n for n, f in FIELDS.items() if option_of(f).required] == ["model"]


def test_a_huge_number_is_a_400_not_a_crash() -> None:
    with pytest.raises(InvalidSpec, match="--health-interval"):
        DeploymentSpec.parse({"model": "m", "health_interval": 10**400})


def test_every_field_has_a_message_row_or_a_worded_one() -> None:
    worded = {"threads", "ctx_size", "parallel", "health_timeout", "health_retries"}
    assert {p for _, p, _ in MESSAGES} == set(FIELDS) - worded


def _click_params(command: click.Command) -> dict[str, click.Parameter]:
    return {p.name: p for p in command.params if p.name}


@pytest.mark.parametrize("name", list(FIELDS))
def test_the_up_option_says_what_the_spec_says(name: str) -> None:
    f, opt = FIELDS[name], option_of(FIELDS[name])
    param = _click_params(up_cmd)[name]
    if opt.argument:
        assert isinstance(param, click.Argument)
        return
    assert isinstance(param, click.Option)
    assert param.opts == [opt.flag(name)]
    assert param.help == opt.help
    kind = param.type
    if opt.kind == "bool":
        assert param.is_flag
        assert up_cmd.make_context("up", ["minilm"]).params[name] is f.default is False
        return
    if opt.kind in ("int", "float"):
        assert isinstance(kind, click.IntRange if opt.kind == "int" else click.FloatRange)
        assert (kind.min, kind.max) == (opt.minimum, opt.maximum)
    elif opt.kind == "choice":
        assert isinstance(kind, click.Choice)
        assert list(kind.choices) == [str(c) for c in opt.choices]
    elif opt.kind == "file":
        assert isinstance(kind, click.Path)
        assert (kind.exists, kind.dir_okay) == (True, False)
    elif opt.kind == "pairs":
        assert isinstance(kind, KeyValue)
        assert param.multiple
    else:
        assert kind is click.STRING
    if opt.default_text is None and f.default is not None:
        assert param.default == (str(f.default) if opt.kind == "choice" else f.default)
    else:  # described defaults are decided by tursid: nothing is sent unless given
        assert param.default in (None, False)


def test_up_takes_every_field_and_build_the_conversion_ones() -> None:
    assert set(_click_params(up_cmd)) - {"dry_run", "output"} == set(FIELDS)  # the preview's own two
    build = set(_click_params(build_cmd)) - {"output", "name", "push_ref"}
    assert build == set(field_names("source", "conversion"))


def _schema(path: str) -> dict[str, Any]:
    op = control()["paths"][path]["post"]
    return op["requestBody"]["content"]["application/json"]["schema"]


@pytest.mark.parametrize("name", list(FIELDS))
def test_the_openapi_property_says_what_the_spec_says(name: str) -> None:
    f, opt = FIELDS[name], option_of(FIELDS[name])
    prop = _schema("/v1/deployments")["properties"][name]
    assert prop["description"].startswith(opt.help)
    assert prop.get("default") == (None if opt.required else f.default)
    if opt.auto is not None:
        assert prop["anyOf"][0] == {"const": opt.auto}
        prop = prop["anyOf"][1]
    if opt.kind == "pairs":
        assert (prop["type"], prop["maxProperties"]) == ("object", opt.maximum)
        assert prop["propertyNames"] == {"pattern": f"^{opt.pattern}$"}
        assert prop["additionalProperties"] == {"type": "string", "pattern": f"^{PAIR_VALUE}$"}
        return
    if opt.kind == "choice":
        assert prop["enum"] == list(opt.choices)
    else:
        json_type = {"str": "string", "file": "string", "int": "integer", "float": "number", "bool": "boolean"}
        assert prop["type"] == json_type[opt.kind]
    assert (prop.get("minimum"), prop.get("maximum")) == (opt.minimum, opt.maximum)
    assert prop.get("pattern") == (None if opt.pattern is None else f"^{opt.pattern}$")


def test_openapi_documents_every_field_and_build_the_conversion_ones() -> None:
    up = _schema("/v1/deployments")
    assert list(up["properties"]) == list(FIELDS)
    assert up["required"] == ["model"]
    assert list(_schema("/v1/artifacts/build")["properties"]) == list(field_names("source", "conversion"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], {}),
        (["--bits", "4", "--threads", "2", "--ctx-size", "512"], {"bits": 4, "threads": 2, "ctx_size": 512}),
        (["--rate-limit", "5/s", "--allow-pickle"], {"rate_limit": "5/second", "allow_pickle": True}),
        (["--label", "a=1", "--label", "b=x=y", "--label", "a=2"], {"labels": {"a": "2", "b": "x=y"}}),
        (["--health-retries", "5", "--restart", "always"], {"health_retries": 5, "restart": "always"}),
        (["--restart-on-unhealthy", "--calibration", CALIBRATION], {"restart_on_unhealthy": True}),
        (["--name", "x", "--port", "8080", "--host", "0.0.0.0"], {"name": "x", "port": 8080, "host": "0.0.0.0"}),
        (["--min-quality", "0.9", "--batch-wait-ms", "0"], {"min_quality": 0.9, "batch_wait_ms": 0.0}),
    ],
)
def test_what_the_cli_sends_parses_to_what_was_typed(args: list[str], expected: dict[str, Any]) -> None:
    ctx = up_cmd.make_context("up", ["minilm", *args])
    spec = DeploymentSpec.parse(request_body(ctx.params))
    assert spec == replace(DeploymentSpec.parse({"model": "minilm"}), **expected, calibration=spec.calibration)
    assert spec.calibration == (CALIBRATION if "--calibration" in args else None)


def test_stored_options_round_trip() -> None:
    body = {f: valid_value(FIELDS[f]) for f in field_names("conversion", "serving", "metadata")}
    spec = DeploymentSpec.parse({**body, "model": "minilm", "api_key": "k" * 20})
    stored = spec.stored_options(api_key_sha256="ab" * 32)
    assert "api_key" not in stored
    assert "k" * 20 not in str(stored)
    assert stored["api_key_sha256"] == "ab" * 32
    assert stored["quantization_scheme"] == spec.quantization  # the key older rows have
    back = DeploymentSpec.from_stored(stored)
    assert back == replace(spec, model="", api_key=None)
    assert back.health_check() == spec.health_check()


def test_spec_to_worker_settings_and_back() -> None:
    spec = DeploymentSpec.parse(
        {"model": "m", "threads": 3, "ctx_size": 256, "parallel": 2, "max_queue": 0, "max_batch": 4}
        | {"batch_wait_ms": 0.5}
        | {"rate_limit": "7/minute", "restart": "always", "api_key": "auto"}
    )
    settings = WorkerSettings("d", "--help", "/a/rt", "127.0.0.1", 9000, spec, "cd" * 32)
    back = WorkerSettings.from_json(settings.to_json())
    worker = [f.name for f in spec_fields() if option_of(f).worker]
    assert worker == ["threads", "ctx_size", "parallel", "max_queue", "max_batch", "batch_wait_ms", "rate_limit"]
    assert [getattr(back.spec, n) for n in worker] == [getattr(spec, n) for n in worker]
    assert back == replace(settings, spec=DeploymentSpec(**{n: getattr(spec, n) for n in worker}))
    assert spec.api_key is not None
    assert spec.api_key not in settings.to_json()


@pytest.mark.parametrize(
    "text",
    ["", "[]", '{"serving": {}}', '{"name": "d", "model_ref": "m", "artifact": "/a", "host": "h", "serving": {}}'],
)
def test_worker_settings_that_do_not_parse_are_refused(text: str) -> None:
    with pytest.raises(InvalidSpec):
        WorkerSettings.from_json(text)
