"""The control API's parsing, naming and guards, against tursid's application in process (tests/unit/control_app.py):
problem+json with stable codes for bad JSON, wrong types, bad names and ports, unknown routes and methods, bodies over
the cap or nested too deep, and what a web page on another site can send. What needs tursid as a process (the socket,
signals, restore, workers) is in tests/integration/test_daemon.py and its neighbours."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.unit.control_app import ControlApp
from tursi.core.errors import InvalidRequest, ModelNotFound, RequestTooLarge
from tursi.core.hardware import HardwareProfile
from tursi.daemon.state import Deployment

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory, hardware: HardwareProfile) -> Iterator[ControlApp]:
    """One tursid for the table of refusals below: each case checks that it left nothing behind."""
    app = ControlApp(tmp_path_factory.mktemp("idle") / "home", hardware)
    yield app
    app.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/v1/nope", None, 404, "not_found"),
        ("GET", "/v1/deployments/ghost", None, 404, "deployment_not_found"),
        ("DELETE", "/v1/deployments/ghost", None, 404, "deployment_not_found"),
        ("GET", "/v1/deployments/ghost/logs", None, 404, "deployment_not_found"),
        ("POST", "/v1/deployments", b"{not json", 400, "invalid_request"),
        ("POST", "/v1/deployments", b"[1, 2]", 400, "invalid_request"),
        ("POST", "/v1/deployments", b"\xff\xfe{}", 400, "invalid_request"),  # UTF-16
        ("POST", "/v1/deployments", b'{"model": "minilm", "x": NaN}', 400, "invalid_request"),
        ("POST", "/v1/deployments", b'{"model": "\\ud800"}', 400, "invalid_request"),  # a lone surrogate
        ("POST", "/v1/deployments", b"{}", 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": 5}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": ""}', 400, "invalid_request"),
        ("POST", "/v1/deployments", b'{"model": "a\\u0001b"}', 400, "invalid_request"),
        ("POST", "/v1/deployments", b'{"model": "ghost-model"}', 404, "model_not_found"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "bits": 3}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "bits": true}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "bits": 4, "quantization": "static"}', 501, "not_supported"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "quantization": "fp8"}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "calibration": "/no/such"}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "min_quality": 2}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "target": "pi9"}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "revision": "a b"}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "threads": -1}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "max_queue": 5000}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "allow_pickle": "yes"}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "rate_limit": "lots"}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "restart": "sometimes"}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "api_key": "short"}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "name": "Bad Name!"}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "name": "-dash"}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "name": "' + b"a" * 65 + b'"}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "name": 7}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "host": 5}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "port": 70000}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "port": 0}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "port": true}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "port": "80"}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "smollm2", "bits": 4}', 400, "invalid_spec"),
        ("POST", "/v1/artifacts/build", b"{}", 400, "invalid_spec"),
        ("POST", "/v1/artifacts/build", b'{"model": "ghost-model"}', 404, "model_not_found"),
        ("DELETE", "/v1/artifacts/ghost", None, 400, "invalid_spec"),  # not hex: never a path
        ("GET", "/v1/artifacts/abcd/bundle", None, 404, "model_not_found"),
    ],
)
def test_api_errors_are_problem_json(
    idle: ControlApp, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    answer = idle.request(method, path, body, JSON)
    payload = answer.json()
    assert answer.status == status
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert payload["code"] == code
    assert payload["status"] == status
    assert payload["detail"]
    assert idle.client.healthy()  # bad input never takes the daemon down
    assert idle.daemon.store.list_deployments(all=True) == []  # and leaves nothing behind
    assert not idle.daemon.reserved_names
    assert list(idle.daemon.settings.artifacts_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/deployments", {"DELETE", "GET", "HEAD", "POST"}),
        ("POST", "/health", {"GET", "HEAD"}),
        ("GET", "/v1/artifacts/abcd", {"DELETE"}),
    ],
)
def test_a_wrong_method_is_405_with_allow(idle: ControlApp, method: str, path: str, allow: set[str]) -> None:
    answer = idle.request(method, path, b"{}" if method != "GET" else None, JSON)
    assert (answer.status, answer.problem["code"], answer.problem["status"]) == (405, "method_not_allowed", 405)
    assert set(answer.headers["Allow"].split(",")) == allow


def _record(name: str, port: int, status: str) -> Deployment:
    """A deployment as tursid stores it (no worker behind it: these requests are refused before any would start)."""
    return Deployment(
        name=name,
        model="minilm",
        source="/models/minilm",
        task="embeddings",
        format="onnx",
        quantization="int8",
        artifact_key="c0ffee" * 5 + "ab",
        artifact_path="/nowhere",
        host="127.0.0.1",
        port=port,
        status=status,
        created_at=time.time(),
        options={"restart": "no"},
    )


def test_a_name_or_port_in_use_is_409_before_any_conversion(control: ControlApp) -> None:
    control.daemon.store.add_deployment(_record("taken", 45001, "exited"))  # a stopped deployment keeps its name
    control.daemon.store.add_deployment(_record("waiting", 45002, "restarting"))  # one in backoff keeps its port
    for body, code, detail in [
        ({"model": "minilm", "name": "taken"}, "deployment_exists", "the name 'taken' is already in use"),
        ({"model": "minilm", "port": 45002}, "port_in_use", "port 45002 is used by another deployment"),
    ]:
        answer = control.request("POST", "/v1/deployments", json.dumps(body).encode(), JSON)
        assert (answer.status, answer.problem["code"]) == (409, code), answer.problem
        assert answer.problem["detail"] == detail
    assert sorted(d.name for d in control.daemon.store.list_deployments(all=True)) == ["taken", "waiting"]
    assert not control.daemon.reserved_names
    assert not control.daemon.reserved_ports
    assert list(control.daemon.settings.artifacts_dir.iterdir()) == []  # nothing was converted


def test_an_artifact_prefix_that_matches_two_keys_is_refused(control: ControlApp) -> None:
    for key in ("abcd" + "1" * 28, "abcd" + "2" * 28):
        (control.daemon.settings.artifacts_dir / key).mkdir()
    answer = control.request("POST", "/v1/deployments", b'{"model": "abcd"}', JSON)
    assert (answer.status, answer.problem["code"]) == (400, "invalid_spec")
    assert "matches 2 artifacts" in answer.problem["detail"]


def test_logs_query_is_checked(control: ControlApp) -> None:
    control.daemon.store.add_deployment(_record("quiet", 45003, "exited"))
    answer = control.request("GET", "/v1/deployments/quiet/logs?tail=many")
    assert (answer.status, answer.problem["code"], answer.problem["detail"]) == (
        400,
        "invalid_spec",
        "'tail' must be an integer",
    )
    assert control.request("GET", "/v1/deployments/quiet/logs?tail=5").status == 200


def test_tursid_guards(control: ControlApp) -> None:
    client = control.client
    with pytest.raises(RequestTooLarge):  # over tursid's 1 MiB for control requests
        client.request("POST", "/v1/deployments", {"model": "x" * (2 * 1024 * 1024)})
    with pytest.raises(InvalidRequest, match="nests deeper"):
        client.request("POST", "/v1/deployments", {"model": "minilm", "x": json.loads("[" * 40 + "]" * 40)})
    assert client.healthy()


def test_cross_site_requests_to_a_no_auth_loopback_tursid(control: ControlApp) -> None:
    """What any web page can send to 127.0.0.1 without a CORS preflight (text/plain, a foreign Origin, a cross-site
    fetch) changes nothing; the CLI's own requests (application/json, no Origin) still work."""
    deploy = json.dumps({"model": "minilm", "host": "0.0.0.0"}).encode()
    json_type, text = {"Content-Type": "application/json"}, {"Content-Type": "text/plain;charset=UTF-8"}
    cases = [
        ("POST", "/v1/deployments", deploy, text, 415, "unsupported_media_type"),  # a form or fetch(no-cors)
        ("POST", "/v1/deployments", deploy, {}, 415, "unsupported_media_type"),  # a Blob without a type
        ("POST", "/v1/artifacts/load", b"x" * 512, {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ("POST", "/v1/deployments", deploy, {**json_type, "Origin": "http://evil.example"}, 403, "cross_site_request"),
        ("POST", "/v1/artifacts/prune", None, {"Origin": "null"}, 403, "cross_site_request"),
        ("DELETE", "/v1/deployments", None, {"Sec-Fetch-Site": "cross-site"}, 403, "cross_site_request"),
        ("POST", "/v1/deployments", deploy, {**json_type, "Sec-Fetch-Site": "same-site"}, 403, "cross_site_request"),
    ]
    for method, path, body, headers, status, code in cases:
        answer = control.request(method, path, body, headers)
        assert (answer.status, answer.problem.get("code")) == (status, code), (method, path, headers, answer.problem)
    assert control.client.request("GET", "/v1/deployments") == []  # nothing was deployed
    own = {"Origin": control.url, "Sec-Fetch-Site": "same-origin"}
    assert control.request("POST", "/v1/artifacts/prune", None, own).status == 200  # tursid's own page is not refused
    with pytest.raises(ModelNotFound):  # what the CLI sends passes the guard and reaches the handler
        control.client.request("POST", "/v1/deployments", {"model": "no-such-model-anywhere"})


def test_a_foreign_host_is_421(control: ControlApp) -> None:
    """DNS rebinding: a page whose name now points at 127.0.0.1 reaches tursid's loopback listener."""
    answer = control.request("GET", "/v1/deployments", None, {"Host": "attacker.example"})
    assert (answer.status, answer.problem["code"]) == (421, "host_not_allowed")
    assert control.request("GET", "/v1/deployments", None, {"Host": "localhost"}).status == 200
