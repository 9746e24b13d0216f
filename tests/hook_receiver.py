"""A real hook endpoint for tests: an HTTP server in the test process on a loopback port.

It records every hook request (type, body, headers) and answers with what the test set for
that hook type: a JSON-able dict, raw bytes, a status, a delay. `port=` lets a test start it
on a port the server was told about while the receiver was still down.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional


class Receiver:
    def __init__(self, port: int = 0):
        self.calls: list[dict] = []
        self.answers: dict[str, object] = {}  # hook type -> dict | bytes | callable(call)
        self.statuses: dict[str, list[int]] = {}  # hook type -> statuses to answer first
        self.delays: dict[str, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = json.loads(raw)
                call = {"type": body["Type"], "body": body, "headers": dict(self.headers),
                        "time": time.monotonic()}
                with receiver.lock:
                    receiver.calls.append(call)
                    statuses = receiver.statuses.get(body["Type"])
                    status = statuses.pop(0) if statuses else 200
                delay = receiver.delays.get(body["Type"], 0)
                if delay:
                    time.sleep(delay)
                answer = receiver.answers.get(body["Type"], {})
                if callable(answer):
                    answer = answer(call)
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def of(self, hook_type: str) -> list[dict]:
        with self.lock:
            return [c for c in self.calls if c["type"] == hook_type]

    def types(self) -> list[str]:
        with self.lock:
            return [c["type"] for c in self.calls]

    def wait_for(self, hook_type: str, count: int = 1, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            calls = self.of(hook_type)
            if len(calls) >= count:
                return calls
            time.sleep(0.02)
        raise AssertionError(f"{hook_type}: {len(self.of(hook_type))} calls, wanted {count}; "
                             f"got {self.types()}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def closed_port_url(port: Optional[int] = None) -> str:
    from .minio_process import free_port

    return f"http://127.0.0.1:{port or free_port()}/hooks"
