"""`siemconn send-test` (siemconn.commands.sendtest), in-process: one marked message to every server, in its
format, and a clear line for a server that is not there."""

from __future__ import annotations

from support import cefparse, leefparse
from support.cli import Cli
from support.rsyslog import RsyslogReceiver

from siemconn.devtools.harness import free_port


def test_send_test_tcp_and_tls(cli: Cli, rsyslog: RsyslogReceiver) -> None:
    servers = [rsyslog.server_entry("t", "TCP"), rsyslog.server_entry("s", "TLS", format="rfc5424")]
    rc, out = cli.run("send-test", "--config", cli.config(servers))
    assert rc == 0, out
    assert out.count("ok     send-test") == 2
    fields = rsyslog.wait_fields(2)
    assert {f.proto for f in fields} == {"tcp", "tls"}
    assert all("SIEMCONN-TEST-MESSAGE" in f.msg for f in fields)
    tls = next(f for f in fields if f.proto == "tls")
    assert tls.app == "siemconn" and tls.msgid == "audit"


def test_send_test_closed_port_fails_clearly(cli: Cli) -> None:
    closed = free_port()
    servers = [{"name": "gone", "server_protocol": "TCP", "server_host": "127.0.0.1", "server_port": closed}]
    rc, out = cli.run("send-test", "--config", cli.config(servers))
    assert rc == 1
    assert (
        f"FAILED send-test gone (TCP 127.0.0.1:{closed}): connection refused; is the syslog server listening on that TCP port?"
        in out
    )


def test_send_test_in_cef_and_leef(cli: Cli, rsyslog: RsyslogReceiver) -> None:
    servers = [
        rsyslog.server_entry("c", "TCP", format="cef", hostname="conn-1"),
        rsyslog.server_entry("l", "UDP", format="leef", hostname="conn-1"),
    ]
    rc, out = cli.run("send-test", "--config", cli.config(servers))
    assert rc == 0, out
    assert "(cef); search your SIEM" in out and "(leef); search your SIEM" in out
    lines = rsyslog.wait_for(2)
    c = cefparse.parse_syslog(next(ln for ln in lines if " CEF:" in ln).encode()).cef
    assert (c.vendor, c.product, c.signature, c.name) == (
        "Vectra AI",
        "siemconn",
        "siemconn.send_test",
        "siemconn send-test",
    )
    assert (
        "SIEMCONN-TEST-MESSAGE" in c.extension["msg"] and "SIEMCONN-TEST-MESSAGE" in c.labelled()["rawEvent"]
    )
    lf = leefparse.parse_syslog(next(ln for ln in lines if " LEEF:" in ln).encode()).leef
    assert (lf.product, lf.event_id, lf.delimiter) == ("siemconn", "siemconn.send_test", "\t")
    assert "SIEMCONN-TEST-MESSAGE" in lf.attributes["msg"]
