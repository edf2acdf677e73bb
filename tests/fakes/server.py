"""A real local HTTP server that plays a data provider in tests.

Each provider's fake (``tests/fakes/<provider>.py``) gives it a ``route`` function that
answers in that provider's documented format; this module adds what every fake needs:
a free port on 127.0.0.1, a record of requests (to check auth headers, parameters and
pagination), and scripted failures served before the normal answer (429 with
Retry-After, 5xx, HTML, truncated JSON, a hanging response for timeouts).

    with FakeProvider(route) as fake:
        fake.fail_next(429, headers={"Retry-After": "1"})
        client = ProviderClient("x", fake.url, ...)
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int = 200
    body: bytes | str | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        body = self.body
        if isinstance(body, (bytes, str)):
            data = body.encode() if isinstance(body, str) else body
        else:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        return data, headers


def json_response(body: Any, status: int = 200, **headers: str) -> Response:
    return Response(status, body, {"Content-Type": "application/json", **headers})


HTML_ERROR_PAGE = ("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
                   "<body><h1>Bad Gateway</h1></body></html>")

Route = Callable[[Request], Response]


class FakeProvider:
    """Serves ``route`` on 127.0.0.1 until closed; see the module docstring."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.requests: list[Request] = []
        self._scripted: deque[Response] = deque()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, parse_qs(parts.query),
                                  {k.lower(): v for k, v in self.headers.items()},
                                  self.rfile.read(length) if length else b"")
                with fake._lock:
                    fake.requests.append(request)
                    scripted = fake._scripted.popleft() if fake._scripted else None
                response = scripted or fake.route(request)
                if response.delay_s:
                    time.sleep(response.delay_s)
                data, headers = response.encoded()
                try:
                    self.send_response(response.status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    def fail_next(self, status: int, body: bytes | str | Any = b"", *, times: int = 1,
                  headers: dict[str, str] | None = None, delay_s: float = 0.0) -> None:
        """Answer the next ``times`` requests with this instead of the route's answer."""
        with self._lock:
            for _ in range(times):
                self._scripted.append(Response(status, body, dict(headers or {}), delay_s))

    def __enter__(self) -> FakeProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
