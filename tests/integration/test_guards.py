"""Request guards on a real worker: 413 before the body is read, 408 for a body that trickles (while other requests
keep being served), 400 for JSON nested too deep, 421 for a foreign Host on loopback, and the connection deadlines
and caps of tursi.http.connections. tursid's own guards run in process: tests/unit/test_control_api.py."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import DaemonProc, Env
from tests.integration.test_lifecycle import post


def raw_http(port: int, head: str, body: bytes = b"", wait_s: float = 10.0) -> tuple[int, dict]:
    """Send a hand-made request (possibly incomplete) and return (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        s.sendall(head.encode() + b"\r\n\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1] or b"{}")


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_worker_guards(env: Env, tiny_bert: Path) -> None:
    env.vars["TURSI_BODY_TIMEOUT"] = "1"
    DaemonProc(env).start()
    endpoint = env.cli("up", str(tiny_bert), "--name", "g", check=True).stdout.split(": ", 1)[1].strip()
    port = int(endpoint.rsplit(":", 1)[1].split("/")[0])
    host = f"Host: 127.0.0.1:{port}\r\nContent-Type: application/json"

    t0 = time.monotonic()  # no body is ever sent: the answer must come from the headers alone
    status, problem = raw_http(port, f"POST /v1/embeddings HTTP/1.1\r\n{host}\r\nContent-Length: 50000000")
    assert (status, problem["code"]) == (413, "request_too_large")
    assert time.monotonic() - t0 < 5

    with socket.create_connection(("127.0.0.1", port)) as slow:  # 10 of 100 promised bytes, then silence
        slow.sendall(f"POST /v1/embeddings HTTP/1.1\r\n{host}\r\nContent-Length: 100\r\n\r\n".encode() + b'{"input": ')
        assert post(endpoint + "/embeddings", {"input": "others are served meanwhile"})[0] == 200
        slow.settimeout(10)
        answer = slow.recv(65536)
    assert b" 408 " in answer.split(b"\r\n", 1)[0]
    assert b"request_timeout" in answer

    status, problem = raw_http(port, f"POST /v1/embeddings HTTP/1.1\r\n{host}\r\nContent-Length: 100000", b"[" * 100000)
    assert (status, problem["code"]) == (400, "invalid_request")
    deep = json.dumps({"input": "x", "extra": json.loads("[" * 40 + "]" * 40)}).encode()
    status, problem = raw_http(port, f"POST /v1/embeddings HTTP/1.1\r\n{host}\r\nContent-Length: {len(deep)}", deep)
    assert (status, problem["code"]) == (400, "invalid_request")
    assert "nests deeper" in problem["detail"]

    bomb = gzip.compress(b'{"input": "' + b"a" * (64 * 1024 * 1024) + b'"}')  # 64 MiB of JSON in ~65 KiB
    head = f"POST /v1/embeddings HTTP/1.1\r\n{host}\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}"
    status, problem = raw_http(port, head, bomb)
    assert (status, problem["code"]) == (413, "request_too_large")  # the limit counts inflated bytes
    assert psutil.Process(env.ps()[0]["pid"]).memory_info().rss < 1024 * 1024 * 1024

    _worker_refuses_cross_site(port, endpoint)

    evil = "Host: attacker.example:80"  # DNS rebinding: a page whose name now points at 127.0.0.1
    status, problem = raw_http(port, f"POST /v1/embeddings HTTP/1.1\r\n{evil}\r\nContent-Length: 2", b"{}")
    assert (status, problem["code"]) == (421, "host_not_allowed")
    status, _ = raw_http(port, f"GET /health HTTP/1.1\r\nHost: localhost:{port}")
    assert status == 200
    assert env.client.healthy()


def _worker_refuses_cross_site(port: int, endpoint: str) -> None:
    """text/plain or no type -> 415, a foreign Origin or a cross-site fetch -> 403; the openai client still works."""
    from openai import OpenAI

    body = json.dumps({"input": "x"}).encode()
    for headers, status, code in [
        ({"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ({}, 415, "unsupported_media_type"),
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403, "cross_site_request"),
        ({"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403, "cross_site_request"),
    ]:
        got, problem = _send(port, "POST", "/v1/embeddings", body, headers)
        assert (got, problem.get("code")) == (status, code), headers
    own = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"}
    assert _send(port, "POST", "/v1/embeddings", body, own)[0] == 200
    assert len(OpenAI(base_url=endpoint, api_key="none").embeddings.create(model="g", input=["x"]).data) == 1


def test_slow_headers_and_connection_floods(env: Env, tiny_bert: Path) -> None:
    """Slowloris on headers is cut at TURSI_HEADER_TIMEOUT, counted from the connection opening: connections
    that send part of their headers and connections that send nothing at all are both closed after the
    deadline. One address cannot hold more than its share of connections (the next gets 503
    too_many_connections) while other addresses are served."""
    env.vars.update({"TURSI_HEADER_TIMEOUT": "2", "TURSI_MAX_CONNECTIONS_PER_CLIENT": "6"})
    DaemonProc(env).start()
    endpoint = env.cli("up", str(tiny_bert), "--name", "g", check=True).stdout.split(": ", 1)[1].strip()
    port = int(endpoint.rsplit(":", 1)[1].split("/")[0])
    half = f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: appl".encode()
    attacker = ("127.0.0.2", 0)  # another loopback address: a second client as the worker sees it

    opened = time.monotonic()
    hogs = [socket.create_connection(("127.0.0.1", port), source_address=attacker) for _ in range(6)]
    for s in hogs[:3]:
        s.sendall(half)  # headers begun, never finished; hogs[3:] send nothing at all
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=attacker) as extra:
        answer = extra.recv(65536)
        assert extra.recv(65536) == b""  # and closed
    assert answer.startswith(b"HTTP/1.1 503 ")
    problem = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert (problem["code"], problem["status"]) == ("too_many_connections", 503)
    assert post(endpoint + "/embeddings", {"input": "another client is served meanwhile"})[0] == 200

    for s in hogs:  # each hog, partial or silent, is closed by the server once its headers are 2 s late
        s.settimeout(max(0.1, opened + 8 - time.monotonic()))
        try:
            assert s.recv(65536) == b""
        except TimeoutError:
            pytest.fail(f"a {'silent' if s in hogs[3:] else 'half-sent'} connection outlived the 2 s header deadline")
    assert 1.5 < time.monotonic() - opened < 8
    for s in hogs:
        s.close()
    worker = psutil.Process(env.ps()[0]["pid"])
    left = [c for c in worker.net_connections("tcp") if c.raddr and c.raddr.ip == "127.0.0.2"]
    assert left == []  # nothing of the hogs is left open in the worker
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=attacker) as again:
        again.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert again.recv(65536).startswith(b"HTTP/1.1 200 ")  # its count went back down


def _send(port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if "problem+json" in resp.getheader("Content-Type", "") else {}
    finally:
        conn.close()
