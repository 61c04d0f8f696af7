"""siemconn.devtools.harness: what the tests, the benchmarks and the demo share."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from siemconn.config import load_configuration
from siemconn.devtools.harness import (
    config_skeleton,
    free_port,
    make_server_certs,
    split_frames,
    start_fake_tenant,
    wait_until,
    write_config,
)


def test_split_frames_auto_detects_each_message_and_keeps_a_partial_one() -> None:
    buf = bytearray(b"<14>a\r\n5 <14>b<14>c\n7 <14>d")
    assert split_frames(buf) == [b"<14>a", b"<14>b", b"<14>c"]
    assert buf == b"7 <14>d"  # the counted frame is not complete yet
    buf += b"ef"
    assert split_frames(buf) == [b"<14>def"] and not buf


def test_split_frames_explicit_framings() -> None:
    buf = bytearray(b"12 hello\nworld!3 abc")
    assert split_frames(buf, "octet-counting") == [b"hello\nworld!", b"abc"] and not buf
    buf = bytearray(b"1 x\n2 y\r\npart")
    assert split_frames(buf, "lf") == [b"1 x", b"2 y\r"] and buf == b"part"
    with pytest.raises(ValueError, match="bad octet count"):
        split_frames(bytearray(b"012 abc"), "octet-counting")
    with pytest.raises(ValueError, match="bad octet count"):
        split_frames(bytearray(b"<14>x\n"), "octet-counting")


def test_free_port_is_free_for_tcp_and_udp() -> None:
    port = free_port()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u,
    ):
        t.bind(("127.0.0.1", port))
        u.bind(("127.0.0.1", port))


def test_config_skeleton_is_a_valid_config(tmp_path: Path) -> None:
    servers = [{"name": "s", "server_protocol": "TCP", "server_host": "127.0.0.1", "server_port": 514}]
    path = write_config(
        tmp_path / "config.json", config_skeleton(tmp_path, servers, schedule="* * * * *", batch_size=7)
    )
    cfg = load_configuration(path)
    assert cfg.batch_size == 7 and cfg.retry_count == -1 and cfg.data_dir == str(tmp_path / "data")


def test_server_certs_verify_for_their_names(tmp_path: Path) -> None:
    files = make_server_certs(tmp_path / "certs")
    ctx = ssl.create_default_context(cafile=str(files.ca))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(str(files.cert), str(files.key))
    assert (files.key.stat().st_mode & 0o077) == 0
    assert ctx.get_ca_certs()  # the CA loads; verification itself is covered by the TLS tests


def test_start_fake_tenant_waits_until_it_listens() -> None:
    proc, url = start_fake_tenant(["--port", "0", "--seed-detections", "3"])
    try:
        assert url.startswith("http://127.0.0.1:")
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5):
            pass
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


def test_wait_until_names_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="waiting for the answer"):
        wait_until(lambda: False, 0.05, "the answer", interval=0.01)
