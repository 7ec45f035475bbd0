from __future__ import annotations

import pytest

from tursi.core.errors import InvalidSpec
from tursi.core.restart import Backoff, RestartPolicy


@pytest.mark.parametrize(
    ("spec", "code", "restarts", "expected"),
    [
        ("no", 1, 0, False),
        ("on-failure", 0, 0, False),  # a clean exit is not a failure
        ("on-failure", 137, 5, True),
        ("on-failure", None, 0, True),  # unknown code (adopted worker) counts as failure
        ("on-failure:2", 1, 1, True),
        ("on-failure:2", 1, 2, False),  # gives up after N
        ("always", 0, 100, True),
        ("unless-stopped", 0, 3, True),
    ],
)
def test_should_restart(spec: str, code: int | None, restarts: int, expected: bool) -> None:
    assert RestartPolicy.parse(spec).should_restart(code, restarts) is expected


@pytest.mark.parametrize("spec", ["sometimes", "always:3", "on-failure:", "on-failure:-1", "no:1"])
def test_bad_policies(spec: str) -> None:
    with pytest.raises(InvalidSpec, match="--restart"):
        RestartPolicy.parse(spec)


def test_round_trip() -> None:
    assert str(RestartPolicy.parse("on-failure:3")) == "on-failure:3"
    assert str(RestartPolicy.parse(None)) == "no"


def test_backoff_doubles_caps_and_resets_after_a_stable_run() -> None:
    b = Backoff(base_s=0.1, cap_s=1.0, stable_s=10)
    assert [b.next_delay(0.5) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.next_delay(60) == 0.1
