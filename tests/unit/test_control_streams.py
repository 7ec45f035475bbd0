"""A streamed answer from tursid (``up`` progress, ``logs -f``) has no read deadline once it has started: a
conversion step may be silent for longer than the client's request timeout."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tursi.client.control import ControlClient


class _SlowStream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        self.wfile.write(b'{"event": "status", "message": "converting"}\n')
        self.wfile.flush()
        time.sleep(2.5)  # a silent step, longer than the client's 1 s timeout
        self.wfile.write(b'{"event": "done"}\n')
        self.wfile.flush()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_silent_step_longer_than_the_timeout_does_not_cut_the_stream() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowStream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ControlClient(f"http://127.0.0.1:{server.server_address[1]}", timeout=1.0)
        events = list(client.stream_events("GET", "/v1/stream"))
    finally:
        server.shutdown()
    assert [e["event"] for e in events] == ["status", "done"]
