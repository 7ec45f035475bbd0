from __future__ import annotations

import pytest

from tursi.client.control import problem_to_error
from tursi.core.errors import (
    DaemonUnavailable,
    DeploymentNotFound,
    InternalError,
    InvalidRequest,
    InvalidSpec,
    ModelNotFound,
    NotSupported,
    TursiError,
    UnsafeModel,
    classify,
    error_for_code,
    problem_for,
)


class _Special(DeploymentNotFound):
    pass


@pytest.mark.parametrize(
    ("exc", "cls", "status", "exit_code", "code"),
    [
        (ModelNotFound("x"), ModelNotFound, 404, 66, "model_not_found"),
        (DeploymentNotFound("x"), DeploymentNotFound, 404, 66, "deployment_not_found"),
        (_Special("x"), DeploymentNotFound, 404, 66, "deployment_not_found"),  # most specific known class wins
        (InvalidSpec("x"), InvalidSpec, 400, 64, "invalid_spec"),
        (NotSupported("x"), NotSupported, 501, 64, "not_supported"),
        (UnsafeModel("x"), UnsafeModel, 422, 65, "unsafe_model"),
        (DaemonUnavailable("x"), DaemonUnavailable, 503, 69, "daemon_unavailable"),
        (KeyError("x"), InternalError, 500, 70, "internal_error"),  # builtins are bugs, never the user's fault
        (ZeroDivisionError(), InternalError, 500, 70, "internal_error"),
    ],
)
def test_classify_maps_by_mro(exc: BaseException, cls: type, status: int, exit_code: int, code: str) -> None:
    got = classify(exc)
    assert issubclass(got, cls)
    assert (got.http_status, got.exit_code) == (status, exit_code)
    assert problem_for(exc)["code"] == code
    assert problem_for(exc)["status"] == status


def test_problem_has_the_rfc7807_fields_and_extras() -> None:
    body = InvalidRequest("bad input", hint="try again", param="input").to_problem()
    assert body == {
        "type": "https://tursi.dev/errors/invalid_request",
        "title": "Invalid request",
        "status": 400,
        "detail": "bad input",
        "code": "invalid_request",
        "hint": "try again",
        "param": "input",
    }


def test_internal_error_problem_does_not_leak_the_message() -> None:
    body = problem_for(RuntimeError("secret path /etc/shadow"))
    assert "secret" not in body["detail"]


def test_problem_round_trips_through_the_client() -> None:
    err = problem_to_error(ModelNotFound("no such model", hint="pip install x").to_problem())
    assert type(err) is ModelNotFound
    assert (err.detail, err.hint, err.exit_code) == ("no such model", "pip install x", 66)


def test_unknown_code_from_a_newer_daemon_keeps_its_code() -> None:
    err = problem_to_error({"code": "brand_new", "status": 418, "detail": "teapot"})
    assert type(err) is TursiError
    assert (err.code, err.http_status, err.detail) == ("brand_new", 418, "teapot")


def test_every_code_is_unique() -> None:
    seen: dict[str, type] = {}
    stack = [TursiError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if not cls.__module__.startswith("tursi."):
            continue
        assert cls.code not in seen, f"{cls} reuses {cls.code}"
        seen[cls.code] = cls
        assert error_for_code(cls.code) is cls
