"""Who may use the dashboard's port: only a browser that opened the one-time link `tursi ui` printed, from the
dashboard's own origin, with the session's CSRF token for anything that changes state. Real tursid, real HTTP."""

from __future__ import annotations

import http.client
import json
import subprocess
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import DAEMON, DaemonProc, Env, wait_for
from tests.integration.test_lifecycle import free_port


@pytest.fixture
def ui(env: Env) -> Iterator[tuple[Env, int]]:
    port = free_port()
    env.vars["TURSI_UI"] = f"127.0.0.1:{port}"
    daemon = DaemonProc(env).start()
    yield env, port
    daemon.terminate()


def call(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def log_in(env: Env, port: int) -> tuple[str, str, str]:
    """(cookie header, CSRF token, the Set-Cookie line) through the link `tursi ui` prints."""
    link = urlsplit(env.cli("ui", check=True).stdout.strip())
    assert link.port == port
    status, headers, _ = call(port, "GET", f"{link.path}?{link.query}")
    assert status == 303
    assert headers["location"] == "/ui/"
    jar = SimpleCookie(headers["set-cookie"])
    cookie = f"tursi_ui={jar['tursi_ui'].value}"
    status, _, body = call(port, "GET", "/ui/session", {"Cookie": cookie})
    assert status == 200
    return cookie, json.loads(body)["csrf"], headers["set-cookie"]


def code(body: bytes) -> str:
    return str(json.loads(body)["code"])


def test_without_a_session_nothing_answers_but_the_log_in_page(ui: tuple[Env, int]) -> None:
    env, port = ui
    for path in ("/v1/deployments", "/ui/session", "/ui/history", "/v1/system"):
        status, _, body = call(port, "GET", path)
        assert (status, code(body)) == (401, "session_required"), path
    status, _, body = call(port, "POST", "/v1/deployments", {"Content-Type": "application/json"}, b'{"model":"x"}')
    assert (status, code(body)) == (401, "session_required")
    status, _, page = call(port, "GET", "/ui/")
    assert status == 401
    assert b"tursi ui" in page
    status, _, page = call(port, "GET", "/ui/login?token=made-up")
    assert status == 401
    assert call(port, "GET", "/ui/assets/app.js")[0] == 200  # the page's own files are public


def test_the_link_works_once_and_gives_a_strict_http_only_cookie(ui: tuple[Env, int]) -> None:
    env, port = ui
    link = urlsplit(env.cli("ui", check=True).stdout.strip())
    first = call(port, "GET", f"{link.path}?{link.query}")
    assert first[0] == 303
    set_cookie = first[1]["set-cookie"].lower()
    assert "httponly" in set_cookie
    assert "samesite=strict" in set_cookie
    assert "path=/" in set_cookie
    assert call(port, "GET", f"{link.path}?{link.query}")[0] == 401  # used


def test_state_changes_need_the_csrf_token_and_the_own_origin(ui: tuple[Env, int]) -> None:
    env, port = ui
    cookie, csrf, _ = log_in(env, port)
    json_type = {"Cookie": cookie, "Content-Type": "application/json"}
    status, _, body = call(port, "POST", "/v1/artifacts/prune", json_type, b"{}")
    assert (status, code(body)) == (403, "csrf_failed")
    status, _, body = call(port, "POST", "/v1/artifacts/prune", {**json_type, "X-CSRF-Token": "wrong"}, b"{}")
    assert (status, code(body)) == (403, "csrf_failed")
    foreign = {**json_type, "X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    status, _, body = call(port, "POST", "/v1/artifacts/prune", foreign, b"{}")
    assert (status, code(body)) == (403, "cross_site_request")
    status, _, body = call(port, "GET", "/v1/deployments", {"Cookie": cookie, "Origin": "http://evil.example"})
    assert (status, code(body)) == (403, "cross_site_request")  # reading is refused to other sites too
    status, _, body = call(port, "GET", "/v1/deployments", {"Cookie": cookie, "Sec-Fetch-Site": "cross-site"})
    assert (status, code(body)) == (403, "cross_site_request")
    status, _, body = call(port, "GET", "/v1/deployments", {"Cookie": cookie, "Host": f"rebound.example:{port}"})
    assert status == 421  # DNS rebinding: a foreign name for the loopback port
    own = {**json_type, "X-CSRF-Token": csrf, "Origin": f"http://127.0.0.1:{port}"}
    status, _, body = call(port, "POST", "/v1/artifacts/prune", own, b"{}")
    assert status == 200, body
    assert call(port, "POST", "/ui/logout", own, b"{}")[0] == 200
    status, _, body = call(port, "GET", "/v1/deployments", {"Cookie": cookie})
    assert (status, code(body)) == (401, "session_required")  # logged out


def test_the_dashboard_is_loopback_only_and_off_means_off(env: Env) -> None:
    env.vars["TURSI_UI"] = f"0.0.0.0:{free_port()}"
    refused = subprocess.run(DAEMON, env=env.vars, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "loopback only" in refused.stderr
    env.vars["TURSI_UI"] = "off"
    daemon = DaemonProc(env).start()
    try:
        off = env.cli("ui")
        assert off.returncode != 0
        assert "dashboard is not being served" in off.stderr
        assert "Traceback" not in off.stderr
    finally:
        daemon.terminate()


def test_over_the_tls_listener_the_control_token_logs_a_browser_in(env: Env) -> None:
    """Another machine's browser: the dashboard on tursid's TLS listener, logged in with the control token (as a
    bearer token is checked and throttled); the session cookie is Secure and then needs the CSRF token too."""
    import ssl

    from tests.integration.test_remote import said, start_tcp_daemon

    port = free_port()
    proc, log = start_tcp_daemon(env, "--listen", f"127.0.0.1:{port}")
    try:
        token = said(log, "TURSI_TOKEN): ")
        tls = ssl.create_default_context(cafile=str(env.home / "tls" / "tursid.crt"))
        own = f"https://127.0.0.1:{port}"

        def https(method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, Any, bytes]:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=tls)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.headers, resp.read()
            finally:
                conn.close()

        def up() -> bool:
            try:
                return https("GET", "/ui/", {})[0] == 401
            except OSError:
                return False

        wait_for(up, timeout=20)
        status, _, page = https("GET", "/ui/", {})
        assert b"token-form" in page  # the log-in page offers the token form
        json_type = {"Content-Type": "application/json", "Origin": own}
        status, _, body = https("POST", "/ui/login", json_type, json.dumps({"token": "tct_wrong"}).encode())
        assert (status, code(body)) == (401, "unauthorized")
        foreign = {**json_type, "Origin": "https://evil.example"}
        status, _, body = https("POST", "/ui/login", foreign, json.dumps({"token": token}).encode())
        assert (status, code(body)) == (403, "cross_site_request")  # no logging in from another site's page
        status, headers, body = https("POST", "/ui/login", json_type, json.dumps({"token": token}).encode())
        assert status == 200, body
        set_cookie = headers["Set-Cookie"].lower()
        assert "secure" in set_cookie
        assert "httponly" in set_cookie
        assert "samesite=strict" in set_cookie
        cookie = "tursi_ui=" + SimpleCookie(headers["Set-Cookie"])["tursi_ui"].value
        status, _, body = https("GET", "/ui/session", {"Cookie": cookie})
        assert status == 200, body
        csrf = json.loads(body)["csrf"]
        assert https("GET", "/v1/deployments", {"Cookie": cookie})[0] == 200
        status, _, body = https("POST", "/v1/artifacts/prune", {**json_type, "Cookie": cookie}, b"{}")
        assert (status, code(body)) == (403, "csrf_failed")
        status, _, _ = https(
            "POST", "/v1/artifacts/prune", {**json_type, "Cookie": cookie, "X-CSRF-Token": csrf}, b"{}"
        )
        assert status == 200
        assert https("GET", "/v1/deployments", {})[0] == 401  # neither a session nor the token
        assert https("GET", "/v1/deployments", {"Authorization": f"Bearer {token}"})[0] == 200  # the CLI's way
    finally:
        proc.terminate()
        proc.wait(timeout=30)
