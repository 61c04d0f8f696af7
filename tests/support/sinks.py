"""A TCP syslog listener for end-to-end tests: keeps every LF-terminated line, counts its connections."""

from __future__ import annotations

import socket
import threading
from typing import Any

__all__ = ["CountingSink"]


class CountingSink:
    """A TCP syslog listener that keeps every LF-terminated line and counts the connections it accepted."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while chunk := conn.recv(65536):
                buf += chunk
                *done, buf = buf.split(b"\n")
                with self._lock:
                    self._lines.extend(x.decode("utf-8") for x in done)

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def entry(self, name: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "server_protocol": "TCP",
            "server_host": "127.0.0.1",
            "server_port": self.port,
            **extra,
        }

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
