"""sd_notify over real AF_UNIX datagram sockets (a path in a tmp dir and an abstract one)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from siemconn.ops.sdnotify import Notifier, socket_address


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"siemconn-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    yield sock, "@" + name
    sock.close()


def _recv(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_watchdog_status_stopping_reach_a_path_socket(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    n = Notifier({"NOTIFY_SOCKET": path}, pid=4242)
    assert n.enabled
    assert n.ready()
    assert _recv(sock) == ["READY=1", "MAINPID=4242"]
    assert n.watchdog()
    assert _recv(sock) == ["WATCHDOG=1"]
    assert n.status("delivering to 2/3 servers\nserver1 down")
    assert _recv(sock) == ["STATUS=delivering to 2/3 servers server1 down"]
    assert n.stopping()
    assert _recv(sock) == ["STOPPING=1"]
    n.close()


def test_abstract_socket(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, name = abstract_socket
    n = Notifier({"NOTIFY_SOCKET": name})
    assert n.ready()
    assert _recv(sock)[0] == "READY=1"
    n.close()


def test_no_notify_socket_is_a_silent_no_op() -> None:
    n = Notifier({})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog() is False
    assert n.stopping() is False
    assert n.status("x") is False
    assert n.watchdog_interval() is None


def test_default_environment_is_os_environ(
    monkeypatch: pytest.MonkeyPatch, path_socket: tuple[socket.socket, str]
) -> None:
    sock, path = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = Notifier()
    assert n.ready()
    assert _recv(sock) == ["READY=1", f"MAINPID={os.getpid()}"]


def test_missing_socket_does_not_raise_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "later.sock"
    n = Notifier({"NOTIFY_SOCKET": str(path)})
    assert n.watchdog() is False  # nobody listens yet: dropped, not raised
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        assert n.watchdog() is True
        assert _recv(sock) == ["WATCHDOG=1"]
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "77"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "78"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert Notifier(env, pid=77).watchdog_interval() == expected


def test_socket_address_forms() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abc") == b"\0abc"
    assert socket_address("vsock:2:1234") is None
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
