"""A scripted, hostile RUX API for the bad-input tests: exact answer bytes per stream and `from`.

api = PoisonApi({"detections": {0: body0, 3: body1}}).start()   # bytes answered for from=0, from=3
Connector(tmp, api.url, ...)                                   # the service pulls from it
api.requests                                                   # [(stream key, from)], in order

Any request without a scripted answer gets an empty page whose next_checkpoint is `from` (or null when
`empty_null`). The token endpoint accepts any credentials. Bodies are sent exactly as given, so a test can
answer bytes that are not UTF-8, events nested a thousand levels deep, or ids that go down.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["PoisonApi", "event", "nested"]

_STREAMS = {"audits": "audit", "detections": "detections", "entity_scoring": "entity_scoring"}


class PoisonApi:
    """The scripted API server on 127.0.0.1 (a thread)."""

    def __init__(self, pages: dict[str, dict[int, bytes]], *, empty_null: bool = False) -> None:
        self.pages = pages
        self.empty_null = empty_null
        self.requests: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        api, lock = self, self._lock

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self._send(
                    200,
                    b'{"access_token": "poison-token-abcdef", "expires_in": 21600, "token_type": "Bearer"}',
                )

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                name = url.path.rstrip("/").rsplit("/", 1)[-1]
                stream = _STREAMS.get(name)
                if stream is None:
                    self._send(404, b'{"detail": "Not found."}')
                    return
                if stream == "entity_scoring":
                    stream = f"entity_scoring.{params.get('type', '')}"
                frm = int(params.get("from", "0"))
                with lock:
                    api.requests.append((stream, frm))
                body = api.pages.get(stream, {}).get(frm)
                if body is None:
                    nxt = "null" if api.empty_null else str(frm)
                    body = b'{"events": [], "next_checkpoint": %s, "remaining_count": 0}' % nxt.encode()
                self._send(200, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="poison-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> PoisonApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def froms(self, stream: str) -> list[int]:
        with self._lock:
            return [f for s, f in self.requests if s == stream]


def event(i: int | str, **fields: Any) -> dict[str, Any]:
    """A small detection-like event (detection_id marks it as a detection for the e2e helpers)."""
    return {"id": i, "detection_id": 7, "event_timestamp": "2024-08-13T20:43:59Z", **fields}


def nested(depth: int) -> dict[str, Any]:
    """{"a": {"a": ... {}}} nested `depth` levels (built without recursion)."""
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth - 1):
        child: dict[str, Any] = {}
        node["a"] = child
        node = child
    return root
