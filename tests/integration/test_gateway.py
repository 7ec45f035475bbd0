"""One port for every deployment, and models loaded on demand: the gateway routes by `model` (OpenAI and Ollama
clients), a deployment with a short keep-alive unloads to `idle` and the next request (through the gateway or to its
own port) loads it again, `tursi stop`/`start` do the same by hand, and a per-client rate limit stays per client
through the gateway. Real tursid, real workers: the bundled SmolLM2 and a tiny BERT from the conversion cache."""

from __future__ import annotations

import gzip
import http.client
import json
import resource
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import DAEMON, DaemonProc, Env, wait_for
from tests.integration.smollm2_worker import openai_client
from tests.integration.test_guards import raw_http
from tests.integration.test_lifecycle import free_port

pytestmark = pytest.mark.usefixtures("seeded_tiny_bert")


@contextmanager
def daemon_with_gateway(env: Env) -> Iterator[str]:
    """tursid (with ``env``'s settings) and its gateway on a free loopback port: the gateway's base URL."""
    port = free_port()
    env.vars["TURSI_GATEWAY"] = f"127.0.0.1:{port}"
    daemon = DaemonProc(env).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        daemon.terminate()


@pytest.fixture
def gateway(env: Env) -> Iterator[str]:
    with daemon_with_gateway(env) as base:
        yield base


def request(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=120, source_address=(source, 0))
    sent = {"Content-Type": "application/json", **(headers or {})}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=sent)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return resp.status, dict(resp.headers), parsed


def status_of(env: Env, name: str) -> str:
    return str(next(d for d in env.ps("-a") if d["name"] == name)["status"])


def test_one_port_routes_by_model_for_openai_and_ollama_clients(
    env: Env, gateway: str, tiny_bert: Path, smollm2_gguf: Path
) -> None:
    import ollama

    env.cli("up", str(tiny_bert), "--name", "emb", check=True)
    env.cli("up", str(smollm2_gguf), "--name", "chat", "--ctx-size", "512", "--threads", "2", check=True)
    c = openai_client(gateway + "/v1")
    assert {m.id for m in c.models.list().data} == {"emb", "chat"}
    vectors = c.embeddings.create(model="emb", input=["a lighthouse", "a harbour"])
    assert len(vectors.data) == 2
    assert len(vectors.data[0].embedding) > 0
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8, temperature=0, stream=True
        )
        if chunk.choices
    ]
    assert len(pieces) > 1  # streamed through, chunk by chunk
    whole = c.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8, temperature=0
    )
    assert whole.choices[0].message.content == "".join(pieces)
    o = ollama.Client(host=gateway)
    assert {m.model for m in o.list().models} == {"emb:latest", "chat:latest"}
    assert len(o.embed(model="emb", input="a lighthouse").embeddings[0]) == len(vectors.data[0].embedding)
    assert o.chat(model="chat:latest", messages=[{"role": "user", "content": "Say hi"}], options={"num_predict": 4})
    status, _, problem = request(gateway, "POST", "/v1/embeddings", {"model": "nope", "input": "x"})
    assert (status, problem["code"]) == (404, "model_not_found")
    assert "chat" in problem["hint"]
    assert "emb" in problem["hint"]
    status, _, problem = request(gateway, "POST", "/v1/embeddings", {"input": "x"})
    assert (status, problem["param"]) == (400, "model")


def test_keep_alive_unloads_to_idle_and_a_request_loads_it_again(env: Env, gateway: str, tiny_bert: Path) -> None:
    env.cli("up", str(tiny_bert), "--name", "emb", "--keep-alive", "2s", check=True)
    (dep,) = env.ps()
    pid, port = dep["pid"], dep["port"]
    wait_for(lambda: status_of(env, "emb") == "idle", timeout=30)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert env.cli("ps", check=True).stdout.count("Idle") == 1  # ps lists idle deployments without -a
    # probes and /metrics on the idle port answer without loading
    status, _, body = request(f"http://127.0.0.1:{port}", "GET", "/health")
    assert (status, body["state"]) == (200, "idle")
    assert request(f"http://127.0.0.1:{port}", "GET", "/ready")[0] == 503
    assert status_of(env, "emb") == "idle"
    # through the gateway: loaded, answered, the load time reported
    status, headers, body = request(gateway, "POST", "/v1/embeddings", {"model": "emb", "input": "a lighthouse"})
    assert status == 200, body
    assert float(headers["X-Tursi-Load-Seconds"]) > 0
    assert status_of(env, "emb") == "running"
    print(f"\nidle -> loaded by a gateway request in {headers['X-Tursi-Load-Seconds']} s (X-Tursi-Load-Seconds)")
    wait_for(lambda: status_of(env, "emb") == "idle", timeout=30)
    # straight to its own port: the port was held, the request loads it (no refused connection)
    status, _, body = request(f"http://127.0.0.1:{port}", "POST", "/v1/embeddings", {"input": "a harbour"})
    assert status == 200, body
    assert len(body["data"][0]["embedding"]) > 0
    metrics = urllib.request.urlopen(gateway + "/metrics", timeout=10).read().decode()
    assert 'tursi_gateway_loads_total{deployment="emb"} 2' in metrics
    events = [e["kind"] for e in env.client.deployment("emb")["events"]]
    assert events.count("loaded") == 2


def test_activity_on_the_port_keeps_it_loaded(env: Env, gateway: str, tiny_bert: Path) -> None:
    """Requests straight to the worker count as use (seen in its /metrics), probes do not."""
    env.cli("up", str(tiny_bert), "--name", "emb", "--keep-alive", "4s", check=True)
    (dep,) = env.ps()
    until = time.monotonic() + 8
    while time.monotonic() < until:
        assert request(f"http://127.0.0.1:{dep['port']}", "POST", "/v1/embeddings", {"input": "x"})[0] == 200
        time.sleep(0.5)
    assert status_of(env, "emb") == "running"
    assert env.ps()[0]["pid"] == dep["pid"]
    wait_for(lambda: status_of(env, "emb") == "idle", timeout=30)  # /health probes go on: they do not count


def test_stop_and_start_by_hand(env: Env, gateway: str, tiny_bert: Path) -> None:
    env.cli("up", str(tiny_bert), "--name", "emb", "--keep-alive", "forever", check=True)
    assert env.cli("stop", "emb", check=True).stdout.strip() == "emb"
    assert status_of(env, "emb") == "idle"
    out = env.cli("start", "emb", check=True).stdout
    assert "loaded in" in out
    assert status_of(env, "emb") == "running"
    assert "already loaded" in env.cli("start", "emb", check=True).stdout
    missing = env.cli("stop", "nope")
    assert missing.returncode != 0
    assert "nope" in missing.stderr
    env.cli("down", "emb", check=True)  # an idle deployment's port is let go with it
    assert env.ps("-a") == []


def test_a_per_client_limit_stays_per_client_through_the_gateway(env: Env, gateway: str, tiny_bert: Path) -> None:
    env.cli("up", str(tiny_bert), "--name", "emb", "--rate-limit", "2/minute", check=True)
    body = {"model": "emb", "input": "x"}
    assert [request(gateway, "POST", "/v1/embeddings", body)[0] for _ in range(3)] == [200, 200, 429]
    assert request(gateway, "POST", "/v1/embeddings", body, source="127.0.0.2")[0] == 200  # another client
    # a client cannot pose as another by sending the gateway's header itself
    (dep,) = env.ps()
    forged = {"X-Tursi-Forwarded-For": "10.9.8.7", "X-Tursi-Gateway": "guess"}
    direct = f"http://127.0.0.1:{dep['port']}"
    assert [request(direct, "POST", "/v1/embeddings", body, source="127.0.0.3")[0] for _ in range(2)] == [200, 200]
    assert request(direct, "POST", "/v1/embeddings", body, headers=forged, source="127.0.0.3")[0] == 429


def test_a_client_that_hangs_up_stops_the_generation_upstream(env: Env, gateway: str, smollm2_gguf: Path) -> None:
    env.cli("up", str(smollm2_gguf), "--name", "chat", "--ctx-size", "1024", "--threads", "2", check=True)
    (dep,) = env.ps()
    host, port = gateway.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    body = {"model": "chat", "prompt": "A long story about the sea:", "max_tokens": 900, "stream": True}
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    for _ in range(3):
        resp.readline()
    conn.close()

    def generated() -> float:
        page = urllib.request.urlopen(f"http://127.0.0.1:{dep['port']}/metrics", timeout=10).read().decode()
        busy = [line for line in page.splitlines() if line.startswith(("tursi_slots_busy", "tursi_requests_in_flight"))]
        return sum(float(line.rsplit(" ", 1)[1]) for line in busy)

    wait_for(lambda: generated() == 0, timeout=10)  # far sooner than 900 tokens take on 2 cores


def test_a_compose_stack_answers_on_one_port_by_model_name(
    env: Env, gateway: str, tiny_bert: Path, tmp_path: Path
) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(
        "models:\n"
        f"  emb: {{model: {tiny_bert}, x-tursi: {{keep-alive: 10m}}}}\n"
        "  chat: {model: smollm2, context_size: 512, runtime_flags: [--threads, '2']}\n"
    )
    env.cli("compose", "-f", str(path), "up", check=True)
    c = openai_client(gateway + "/v1")
    assert len(c.embeddings.create(model="emb", input="one port").data[0].embedding) > 0
    reply = c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert reply.choices[0].message.role == "assistant"
    listed = {m["id"]: m["status"] for m in json.loads(urllib.request.urlopen(gateway + "/v1/models").read())["data"]}
    assert listed == {"emb": "running", "chat": "running"}


def served(port: int) -> float:
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines() if line.startswith("tursi_requests_total{"))


def test_replicas_share_the_load_and_a_killed_one_loses_no_request(env: Env, gateway: str, tiny_bert: Path) -> None:
    import os
    import signal
    import threading

    env.cli(
        "up", str(tiny_bert), "--name", "emb", "--replicas", "2", "--threads", "1", "--restart", "always", check=True
    )
    deps = {d["name"]: d for d in env.ps()}
    assert set(deps) == {"emb", "emb#2"}
    assert {m["id"] for m in json.loads(urllib.request.urlopen(gateway + "/v1/models").read())["data"]} == {"emb"}
    codes: list[int] = []

    def client(n: int) -> None:
        for i in range(n):
            codes.append(request(gateway, "POST", "/v1/embeddings", {"model": "emb", "input": f"text {i}"})[0])

    threads = [threading.Thread(target=client, args=(20,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 80
    assert served(deps["emb"]["port"]) > 0
    assert served(deps["emb#2"]["port"]) > 0  # both replicas took requests
    split = {name: int(served(d["port"])) for name, d in deps.items()}
    print(f"\n80 requests through the gateway, per replica: {split}")
    codes.clear()
    threads = [threading.Thread(target=client, args=(40,)) for _ in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: len(codes) >= 10, timeout=30)
    os.kill(deps["emb#2"]["pid"], signal.SIGKILL)  # its traffic moves to the other replica
    for t in threads:
        t.join()
    assert codes == [200] * 80
    print(f"emb#2 SIGKILLed after 10+ of 80 requests: statuses {sorted(set(codes))} x {len(codes)}")
    wait_for(lambda: {d["name"]: d for d in env.ps()}["emb#2"]["status"] == "running", timeout=60)  # restarted
    env.cli("down", "emb", check=True)
    assert env.ps("-a") == []  # its replicas went with it


def test_tursid_keep_alive_is_the_default_and_a_deployment_may_keep_its_own(env: Env, tiny_bert: Path) -> None:
    env.vars["TURSI_KEEP_ALIVE"] = "1s"  # like OLLAMA_KEEP_ALIVE
    daemon = DaemonProc(env).start()
    try:
        env.cli("up", str(tiny_bert), "--name", "short", check=True)
        env.cli("up", str(tiny_bert), "--name", "kept", "--keep-alive", "forever", check=True)
        wait_for(lambda: status_of(env, "short") == "idle", timeout=30)
        assert status_of(env, "kept") == "running"
    finally:
        daemon.terminate()


def test_ollama_keep_alive_through_the_gateway(env: Env, gateway: str, tiny_bert: Path) -> None:
    """Ollama's preload (a request with only a model) loads an idle deployment; keep_alive 0 unloads it after the
    reply; a bad keep_alive is a 400 naming it."""
    import ollama

    env.cli("up", str(tiny_bert), "--name", "emb", "--keep-alive", "forever", check=True)
    env.cli("stop", "emb", check=True)
    o = ollama.Client(host=gateway)
    assert len(o.embed(model="emb", input="loaded on demand").embeddings[0]) > 0
    assert status_of(env, "emb") == "running"
    o.embed(model="emb", input="and then let go", keep_alive=0)
    wait_for(lambda: status_of(env, "emb") == "idle", timeout=30)
    status, _, problem = request(gateway, "POST", "/api/embed", {"model": "emb", "input": "x", "keep_alive": "soon"})
    assert (status, problem["param"]) == (400, "keep_alive")


def test_nothing_happens_before_a_request_is_authorized(env: Env, gateway: str, tiny_bert: Path) -> None:
    """Issue 28, defect 3: through the gateway, ``/api/embed {"keep_alive": 0}`` without the deployment's API key
    was answered 401 and still unloaded the model (cutting other clients' streams); ``keep_alive: -1`` pinned it.
    And defect 4's last point: on an idle port (the waker) or through the gateway, a request to an unknown route (a
    browser's favicon.ico) or without the key loaded the model. Now each is refused first and changes nothing."""
    key = "a-long-enough-secret-key-for-the-test"
    env.cli("up", str(tiny_bert), "--name", "emb", "--api-key", key, "--keep-alive", "4s", check=True)
    (dep,) = env.ps()
    direct, auth = f"http://127.0.0.1:{dep['port']}", {"Authorization": f"Bearer {key}"}
    unload = {"model": "emb", "input": "x", "keep_alive": 0}
    status, _, problem = request(gateway, "POST", "/api/embed", unload)
    assert (status, problem["code"]) == (401, "unauthorized")
    time.sleep(1.5)  # keep_alive 0 used to unload right after the reply
    assert (status_of(env, "emb"), env.ps()[0]["pid"]) == ("running", dep["pid"])
    assert request(gateway, "POST", "/api/embed", {**unload, "keep_alive": -1})[0] == 401
    wait_for(lambda: status_of(env, "emb") == "idle", timeout=30)  # not pinned: its own keep-alive still applies
    for base in (gateway, direct):
        status, _, problem = request(base, "GET", "/favicon.ico")
        assert (status, problem["code"]) == (404, "deployment_not_found"), problem
        assert request(base, "POST", "/v1/embeddings", {"model": "emb", "input": "x"})[0] == 401
    time.sleep(1.5)
    assert status_of(env, "emb") == "idle"
    status, headers, body = request(direct, "POST", "/v1/embeddings", {"input": "x"}, headers=auth)
    assert status == 200, body
    assert status_of(env, "emb") == "running"
    status, _, body = request(gateway, "POST", "/api/embed", unload, headers=auth)  # with the key: it does unload
    assert status == 200, body
    wait_for(lambda: status_of(env, "emb") == "idle", timeout=30)


def _answered_503(sockets: list[socket.socket], want: int, within: float = 20.0) -> int:
    """How many of ``sockets`` were answered 503, waiting (up to ``within`` seconds) until ``want`` of them were: a
    loaded tursid accepts and answers a flood of 1,100 over a few seconds, not before the last connect returns."""
    import selectors

    refused = 0
    with selectors.DefaultSelector() as waiting:
        for s in sockets:
            s.setblocking(False)
            waiting.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + within
        while refused < want and waiting.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in waiting.select(timeout=min(left, 1.0)):
                waiting.unregister(key.fileobj)
                try:
                    refused += key.fileobj.recv(4096).startswith(b"HTTP/1.1 503")  # type: ignore[union-attr]
                except OSError:
                    pass
    return refused


def test_an_idle_port_under_a_connection_flood_keeps_tursid_answering(env: Env, tiny_bert: Path) -> None:
    """Issue 28, defect 4: an idle deployment's port is served by tursid's waker, which had none of the workers'
    limits: 1,100 silent connections from one address were all accepted and held, and under ``ulimit -n 1024``
    tursid ran out of descriptors (`tursi ps` failed, the gateway answered 502, the dashboard 500, the log grew 75 MB
    in 30 s). Now the waker counts against tursid's connection limits (per address, in all, the header deadline):
    past its share the address gets a 503 and is closed, and everything else keeps answering."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))  # the flood's own sockets
    gw_port, ui_port = free_port(), free_port()
    env.vars.update({"TURSI_GATEWAY": f"127.0.0.1:{gw_port}", "TURSI_UI": f"127.0.0.1:{ui_port}"})
    daemon = DaemonProc(env, command=["prlimit", "--nofile=1024:1024", "--", *DAEMON]).start()
    flood: list[socket.socket] = []
    try:
        env.cli("up", str(tiny_bert), "--name", "emb", check=True)
        env.cli("stop", "emb", check=True)
        port = env.ps("-a")[0]["port"]
        log_before = daemon.log_path.stat().st_size
        for _ in range(1100):  # from 127.0.0.1, silent: they never send a byte
            try:
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break  # the backlog is full: what the kernel refuses never reached tursid
        refused = _answered_503(flood, want=len(flood) - 300)  # the rest are held until the header deadline
        other = "127.0.0.2"  # a second client: the flood's address is at its share, this one is not
        assert [d["name"] for d in env.ps("-a")] == ["emb"]  # the control API (Unix socket) answers
        status, _, models = request(f"http://127.0.0.1:{gw_port}", "GET", "/v1/models", source=other)
        assert status == 200, models
        assert [m["id"] for m in models["data"]] == ["emb"]
        status, _, page = request(f"http://127.0.0.1:{ui_port}", "GET", "/ui/", source=other)
        assert status == 401  # the dashboard answers: its log-in page, for a browser without a session
        assert "<html" in str(page).lower()
        status, _, body = request(f"http://127.0.0.1:{port}", "POST", "/v1/embeddings", {"input": "x"}, source=other)
        assert status == 200, body  # the idle port still loads the model for a real client
        grown = daemon.log_path.stat().st_size - log_before
        print(
            f"\n{len(flood)} connections opened to the idle port, {refused} answered 503; ps, gateway, "
            f"dashboard and the port answered; tursid's log grew {grown} bytes"
        )
        assert refused >= len(flood) - 300  # beyond the per-address share (256), refused at once
        assert grown < 100_000
    finally:
        for s in flood:
            s.close()
        daemon.terminate()


def _raw(port: int, head: str, body: bytes) -> tuple[int, dict]:
    """``head`` (request line and headers), its Content-Length and ``body``, sent as written."""
    return raw_http(port, f"{head}\r\nContent-Length: {len(body)}", body, wait_s=30)


def test_the_gateway_reads_bodies_with_the_workers_limits(env: Env, tiny_bert: Path) -> None:
    """Issue 28, defects 8 and 9 and the gateway's lows: the gateway parsed bodies with ``json.loads`` on the event
    loop and kept the tree (eight 8 MiB ``[[],[],...]`` bodies stalled the control socket to 1.75 s and took tursid
    from 50 to 508 MB), gave bodies no deadline, and answered 500 to a lone surrogate as ``model`` and to a gzip body.
    Now the workers' limits apply: a body over 100,000 JSON values is a 400 found without parsing it, a trickle is a
    408, a lone surrogate a 400 naming ``model``; a gzip body is decoded and served, a wrong Content-Encoding a 400."""
    import psutil

    port = free_port()
    env.vars.update({"TURSI_GATEWAY": f"127.0.0.1:{port}", "TURSI_BODY_TIMEOUT": "2"})
    daemon = DaemonProc(env).start()
    try:
        env.cli("up", str(tiny_bert), "--name", "emb", check=True)
        tursid = psutil.Process(daemon.proc.pid if daemon.proc else 0)
        rss_before = tursid.memory_info().rss
        nested = b'{"model": "emb", "input": [' + b"[]," * (8 * 2**20 // 3 - 20) + b"[]]}"
        head = f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json"
        answers: list[tuple[int, dict]] = []
        senders = [threading.Thread(target=lambda: answers.append(_raw(port, head, nested))) for _ in range(8)]
        started = time.monotonic()
        for t in senders:
            t.start()
        slowest_ps = 0.0
        while any(t.is_alive() for t in senders):
            t0 = time.monotonic()
            env.ps()  # the control socket, while the eight bodies are read and refused
            slowest_ps = max(slowest_ps, time.monotonic() - t0)
        took = time.monotonic() - started
        grown = (tursid.memory_info().rss - rss_before) / 2**20
        print(
            f"\neight 8 MiB bodies of 2.8M JSON values: {[a[0] for a in answers]} in {took:.1f} s; "
            f"slowest `tursi ps` meanwhile {slowest_ps:.2f} s; tursid grew {grown:.0f} MiB"
        )
        assert [status for status, _ in answers] == [400] * 8
        assert all("100000 JSON values" in problem["detail"] for _, problem in answers)
        assert grown < 150

        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # a body that trickles
            s.sendall(f"{head}\r\nContent-Length: 40\r\n\r\n".encode() + b'{"model": ')
            t0 = time.monotonic()
            answer = s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert time.monotonic() - t0 < 10

        status, problem = _raw(port, head, b'{"model": "\\ud800", "input": "x"}')
        assert (status, problem["param"]) == (400, "model"), problem
        body = json.dumps({"model": "emb", "input": "a lighthouse"}).encode()
        status, reply = _raw(port, head + "\r\nContent-Encoding: gzip", gzip.compress(body))
        assert status == 200, reply
        assert len(reply["data"][0]["embedding"]) > 0
        status, problem = _raw(port, head + "\r\nContent-Encoding: gzip", body)  # says gzip, is not
        assert status == 400, problem
    finally:
        daemon.terminate()
