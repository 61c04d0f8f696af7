"""The developer harness shared by the tests, the benchmarks and `make demo`.

One home for what each of them needs around siemconn: free ports on 127.0.0.1, config.json skeletons,
trustme certificates, splitting a syslog byte stream into messages, starting the fake RUX tenant as a
process and waiting for it, and polling until a condition holds. Nothing here is used by the service.

The fake tenant's own stream tables and event shapes stay in `fake_rux`: an oracle must not share the
code it checks, so nothing here knows the RUX API.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import trustme

__all__ = [
    "MAX_FRAME",
    "CertFiles",
    "config_skeleton",
    "free_port",
    "issue_leaf",
    "make_server_certs",
    "split_frames",
    "start_fake_tenant",
    "wait_until",
    "wait_until_async",
    "write_config",
]

MAX_FRAME = 16 * 1024 * 1024  # the largest octet count split_frames accepts in auto mode

# --- ports and polling -------------------------------------------------------------------------


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (the caller binds it soon after)."""
    other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, other) as s2:
                    s2.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port on 127.0.0.1")


def wait_until(
    pred: Callable[[], bool], timeout: float, what: str = "condition", interval: float = 0.1
) -> None:
    """Poll `pred` until it is true; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def wait_until_async(
    pred: Callable[[], bool], timeout: float, what: str = "condition", interval: float = 0.01
) -> None:
    """`wait_until` for a running event loop: other tasks run while it polls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


# --- configuration -----------------------------------------------------------------------------


def config_skeleton(
    workdir: Path,
    servers: list[dict[str, Any]],
    *,
    schedule: str,
    retry_count: int = -1,
    log_format: str = "json",
    **options: Any,
) -> dict[str, Any]:
    """A config.json document: every stream on `schedule`, data/logs/cert under `workdir`, `options` on top."""
    return {
        "configuration": {
            "server": servers,
            "scheduler": {"audit": schedule, "detections": schedule, "entity_scoring": schedule},
            "retry_count": retry_count,
            "data_dir": str(workdir / "data"),
            "log_dir": str(workdir / "logs"),
            "cert_dir": str(workdir / "cert"),
            "log_format": log_format,
            **options,
        }
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """Write a config document as indented JSON; returns the path."""
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


# --- certificates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertFiles:
    """A CA and one server certificate signed by it, as PEM files."""

    ca: Path
    cert: Path  # leaf + chain
    key: Path


def issue_leaf(
    ca: trustme.CA,
    directory: Path,
    stem: str,
    *identities: str,
    not_after: datetime | None = None,
    not_before: datetime | None = None,
) -> tuple[Path, Path]:
    """Issue a leaf certificate for `identities`; write STEM.pem (leaf + chain) and STEM.key (mode 0600)."""
    leaf = ca.issue_cert(*identities, not_before=not_before, not_after=not_after)
    cert = directory / f"{stem}.pem"
    key = directory / f"{stem}.key"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    return cert, key


def make_server_certs(directory: Path, *names: str) -> CertFiles:
    """A fresh CA (ca.pem) and server.pem/server.key for `names` (default 127.0.0.1 and localhost).

    Needs trustme (a test dependency; installed with the `test` extra).
    """
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca_path = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert, key = issue_leaf(ca, directory, "server", *(names or ("127.0.0.1", "localhost")))
    return CertFiles(ca_path, cert, key)


# --- syslog framing ----------------------------------------------------------------------------


def split_frames(buf: bytearray, framing: str | None = None) -> list[bytes]:
    """Remove and return the complete messages at the start of `buf`; a partial one stays in `buf`.

    framing "lf" splits on newlines, "octet-counting" reads RFC 6587 counts (ValueError on a malformed
    count), None detects per message (a receiver that accepts both; it also drops a trailing CR).
    """
    out: list[bytes] = []
    while buf:
        if framing == "octet-counting" or (framing is None and buf[:1].isdigit()):
            sp = buf.find(b" ", 0, 12)
            count = bytes(buf[:sp]) if sp > 0 else b""
            if count.isdigit() and (framing is not None or int(count) <= MAX_FRAME):
                n = int(count)
                if framing is not None and count != str(n).encode():
                    raise ValueError(f"bad octet count {count!r}")
                if len(buf) < sp + 1 + n:
                    break
                out.append(bytes(buf[sp + 1 : sp + 1 + n]))
                del buf[: sp + 1 + n]
                continue
            if framing is not None:
                if sp < 0 and len(buf) < 12 and buf.isdigit():
                    break  # the count may still be arriving
                raise ValueError(f"bad octet count at {bytes(buf[:20])!r}")
            if sp < 0 and len(buf) < 12:
                break  # the count may still be arriving
        nl = buf.find(b"\n")
        if nl < 0:
            break
        line = bytes(buf[:nl])
        out.append(line.rstrip(b"\r") if framing is None else line)
        del buf[: nl + 1]
    return out


# --- the fake tenant as a process --------------------------------------------------------------

_LISTENING = re.compile(r"listening on (http://\S+)")


def start_fake_tenant(
    args: Sequence[str], *, cwd: Path | None = None, timeout: float = 15.0
) -> tuple[subprocess.Popen[str], str]:
    """Start `python -m siemconn.devtools.fake_rux ARGS` and wait until it listens: (process, base URL).

    The process's stdout stays a pipe (it prints one line at start); RuntimeError if it exits or says
    nothing within `timeout`, after killing it.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "siemconn.devtools.fake_rux", *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"fake RUX exited with {proc.returncode} before it listened")
            continue
        m = _LISTENING.search(line)
        if m:
            return proc, m.group(1)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"fake RUX did not start within {timeout} s")
