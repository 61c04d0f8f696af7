"""A real rsyslogd receiver for tests: UDP, TCP (LF and octet counting on one port), mutual TLS and
server-only TLS, on free ports of 127.0.0.1, with trustme certificates.

    r = RsyslogReceiver(tmp_path)          # writes certs and rsyslog.conf, picks free ports
    r.start()                              # rsyslogd -n -f CONF -i PIDFILE; waits until the TCP ports accept
    r.server_entry("s1", "TLS")            # a config.json "server" object pointing at this receiver
    r.wait_for(10)                         # polls the output until 10 raw lines are there
    r.raw_lines(); r.fields_lines()        # exact received messages; parsed RFC 5424 fields per line
    r.restart(); r.stop()

`DefaultLimitsReceiver` is an rsyslogd at its default size limits (imtcp LF, imtcp octet counting,
imrelp), for the size budget tests.

Pytest: `rsyslog_factory` makes receivers and stops them at teardown; `rsyslog` is one receiver.
Register them from tests/conftest.py with `from support.rsyslog import rsyslog, rsyslog_factory  # noqa`.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from siemconn.devtools.harness import free_port
from support.certs import TlsFiles, make_certs

__all__ = [
    "Fields",
    "DEFAULTS_TEMPLATE",
    "DefaultLimitsReceiver",
    "RELP_TEMPLATE",
    "RSYSLOGD",
    "RelpReceiver",
    "RsyslogReceiver",
    "TEMPLATE",
    "free_port",
    "imrelp_available",
    "relp_receiver",
    "rsyslog",
    "rsyslog_available",
    "rsyslog_factory",
]

TEMPLATE = Path(__file__).with_name("rsyslog.conf.in")
RSYSLOGD = os.environ.get("SIEMCONN_RSYSLOGD") or shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"

_FIELDS_RE = re.compile(
    r"^proto=(?P<proto>\S*) pri=(?P<pri>\S*) fac=(?P<fac>\S*) sev=(?P<sev>\S*) host=(?P<host>\S*) "
    r"app=(?P<app>\S*) procid=(?P<procid>\S*) msgid=(?P<msgid>\S*) "
    r"sd=(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+) msg=(?P<msg>.*)$"
)


@dataclass(frozen=True)
class Fields:
    """One line of fields.log: what rsyslog parsed out of a received message."""

    proto: str  # input name: udp | tcp | tls | tlsanon
    pri: int
    fac: int
    sev: int
    host: str
    app: str
    procid: str
    msgid: str
    sd: str
    msg: str


class RsyslogReceiver:
    """One rsyslogd subprocess writing what it receives to DIR/out/raw.log and DIR/out/fields.log."""

    template: ClassVar[Path] = TEMPLATE

    def __init__(
        self,
        directory: Path,
        *,
        max_message_size: int = 512 * 1024,
        driver: Literal["ossl", "gtls"] = "ossl",
        certs: TlsFiles | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.driver = driver
        self.max_message_size = max_message_size
        self.certs = certs or make_certs(self.directory / "certs")
        self.udp_port = free_port()
        self.tcp_port = free_port()
        self.tls_port = free_port()  # TLS, the client must present a certificate signed by certs.ca
        self.tls_anon_port = free_port()  # TLS, server authentication only
        self.conf = self.directory / "rsyslog.conf"
        self.pidfile = self.directory / "rsyslogd.pid"
        self.raw_path = self.directory / "out" / "raw.log"
        self.fields_path = self.directory / "out" / "fields.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_conf()

    # --- lifecycle ---------------------------------------------------------------------------

    def _write_conf(self) -> None:
        """rsyslog.conf from the template, each @NAME@ replaced by _conf_values()[NAME]."""
        for sub in ("spool", "out"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        text = self.template.read_text()
        for k, v in self._conf_values().items():
            text = text.replace(f"@{k}@", v)
        self.conf.write_text(text)

    def _conf_values(self) -> dict[str, str]:
        return {
            "DIR": str(self.directory),
            "MAXSIZE": str(self.max_message_size),
            "DRIVER": self.driver,
            "CA": str(self.certs.ca),
            "CERT": str(self.certs.server_cert),
            "KEY": str(self.certs.server_key),
            "UDP_PORT": str(self.udp_port),
            "TCP_PORT": str(self.tcp_port),
            "TLS_PORT": str(self.tls_port),
            "TLS_ANON_PORT": str(self.tls_anon_port),
        }

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 20.0) -> None:
        """Start rsyslogd and wait until every TCP port accepts connections."""
        if self.running:
            return
        self.pidfile.unlink(missing_ok=True)
        log = open(self.directory / "rsyslogd.stderr", "ab")  # noqa: SIM115 - owned by the process
        self._proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        pending = self._ports()
        while pending:
            if self._proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited with {self._proc.returncode}: {self.stderr()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rsyslogd did not open ports {sorted(pending)}: {self.stderr()[-2000:]}")
            for port in list(pending):
                with socket.socket() as s:
                    s.settimeout(0.5)
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        pending.discard(port)
            if pending:
                time.sleep(0.05)
        time.sleep(0.1)  # imudp starts with the TCP inputs; give its worker a moment

    def _ports(self) -> set[int]:
        """The TCP ports that accept connections once rsyslogd is ready."""
        return {self.tcp_port, self.tls_port, self.tls_anon_port}

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM; rsyslog flushes its outputs), SIGKILL after `timeout`."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self, timeout: float = 20.0) -> None:
        """Graceful stop, then start again on the same ports with the same certificates."""
        self.stop()
        self.start(timeout)

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def stderr(self) -> str:
        p = self.directory / "rsyslogd.stderr"
        return p.read_text(errors="replace") if p.exists() else ""

    # --- output --------------------------------------------------------------------------------

    @staticmethod
    def _lines(path: Path) -> list[str]:
        if not path.exists():
            return []
        data = path.read_bytes().decode("utf-8", errors="surrogateescape")
        # only complete lines: rsyslog may be in the middle of writing the last one
        return data.split("\n")[:-1]

    def raw_lines(self) -> list[str]:
        """Every message received so far, exactly as it arrived (%rawmsg%), framing removed."""
        return self._lines(self.raw_path)

    def tagged(self, tag: str) -> list[tuple[str, Fields]]:
        """(raw line, its fields) of every message so far whose raw line contains `tag`, in arrival order."""
        return [(r, f) for r, f in zip(self.raw_lines(), self.fields_lines(), strict=False) if tag in r]

    def fields_lines(self) -> list[Fields]:
        """What rsyslog parsed out of every message received so far."""
        out: list[Fields] = []
        for line in self._lines(self.fields_path):
            m = _FIELDS_RE.match(line)
            if m is None:
                raise AssertionError(f"fields.log line not understood: {line[:300]!r}")
            d = m.groupdict()
            out.append(
                Fields(
                    proto=d["proto"],
                    pri=int(d["pri"]),
                    fac=int(d["fac"]),
                    sev=int(d["sev"]),
                    host=d["host"],
                    app=d["app"],
                    procid=d["procid"],
                    msgid=d["msgid"],
                    sd=d["sd"],
                    msg=d["msg"],
                )
            )
        return out

    def mark(self) -> int:
        """The number of raw lines so far; pass it as `since` to read only what arrives later."""
        return len(self.raw_lines())

    def wait_for(
        self,
        n: int,
        timeout: float = 20.0,
        *,
        since: int = 0,
        predicate: Callable[[list[str]], bool] | None = None,
    ) -> list[str]:
        """Poll until at least `n` raw lines arrived after `since` (and `predicate` holds); return them."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.raw_lines()[since:]
            if len(lines) >= n and (predicate is None or predicate(lines)):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"rsyslog received {len(lines)} of {n} expected messages within {timeout} s"
                    + ("" if self.running else f"; rsyslogd is not running: {self.stderr()[-1000:]}")
                )
            time.sleep(0.05)

    def wait_fields(self, n: int, timeout: float = 20.0, *, since: int = 0) -> list[Fields]:
        """Poll until at least `n` parsed lines arrived after `since`."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.fields_lines()[since:]
            if len(lines) >= n:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"rsyslog parsed {len(lines)} of {n} expected messages within {timeout} s"
                )
            time.sleep(0.05)

    # --- configuration helpers ---------------------------------------------------------------------

    def port_for(self, protocol: str, *, mutual: bool = True) -> int:
        p = protocol.upper()
        if p == "UDP":
            return self.udp_port
        if p == "TCP":
            return self.tcp_port
        return self.tls_port if mutual else self.tls_anon_port

    def server_entry(self, name: str, protocol: str, *, mutual: bool = True, **extra: Any) -> dict[str, Any]:
        """A config.json "server" object for this receiver (TLS: CA pinned; mutual: client cert set)."""
        entry: dict[str, Any] = {
            "name": name,
            "server_protocol": protocol.upper(),
            "server_host": "127.0.0.1",
            "server_port": self.port_for(protocol, mutual=mutual),
        }
        if protocol.upper() == "TLS":
            entry["tls_ca_file"] = str(self.certs.ca)
            if mutual:
                entry["tls_client_cert"] = str(self.certs.client_cert)
                entry["tls_client_key"] = str(self.certs.client_key)
        entry.update(extra)
        return entry

    def server_config(self, name: str, protocol: str, *, mutual: bool = True, **extra: Any) -> Any:
        """`server_entry` as a validated siemconn.config.ServerConfig."""
        from siemconn.config import ServerConfig

        return ServerConfig.model_validate(self.server_entry(name, protocol, mutual=mutual, **extra))


RELP_TEMPLATE = Path(__file__).with_name("rsyslog-relp.conf.in")


class RelpReceiver(RsyslogReceiver):
    """An rsyslogd with imrelp only: plain RELP (input name `relp`) and RELP over mutual TLS (`relptls`),
    configured so that `rsp 200` means written to the output file (see rsyslog-relp.conf.in)."""

    template: ClassVar[Path] = RELP_TEMPLATE

    def __init__(self, directory: Path, **kwargs: Any) -> None:
        self.relp_port = free_port()
        self.relp_tls_port = free_port()
        super().__init__(directory, **kwargs)

    def _conf_values(self) -> dict[str, str]:
        return {
            "DIR": str(self.directory),
            "MAXSIZE": str(self.max_message_size),
            "CA": str(self.certs.ca),
            "CERT": str(self.certs.server_cert),
            "KEY": str(self.certs.server_key),
            "RELP_PORT": str(self.relp_port),
            "RELP_TLS_PORT": str(self.relp_tls_port),
        }

    def _ports(self) -> set[int]:
        return {self.relp_port, self.relp_tls_port}

    def port_for(self, protocol: str, *, mutual: bool = True) -> int:
        return self.relp_tls_port if protocol.upper() in ("RELP-TLS", "TLS") else self.relp_port

    def server_entry(self, name: str, protocol: str, *, mutual: bool = True, **extra: Any) -> dict[str, Any]:
        """A config.json "server" object: protocol "RELP" (plain) or "RELP-TLS" (RELP, tls on, mutual)."""
        entry: dict[str, Any] = {
            "name": name,
            "server_protocol": "RELP",
            "server_host": "127.0.0.1",
            "server_port": self.port_for(protocol),
        }
        if protocol.upper() == "RELP-TLS":
            entry["tls"] = True
            entry["tls_ca_file"] = str(self.certs.ca)
            entry["tls_client_cert"] = str(self.certs.client_cert)
            entry["tls_client_key"] = str(self.certs.client_key)
        entry.update(extra)
        return entry


def rsyslog_available() -> bool:
    return os.access(RSYSLOGD, os.X_OK)


_IMRELP = ("/usr/lib/*/rsyslog/imrelp.so", "/usr/lib/rsyslog/imrelp.so", "/usr/lib64/rsyslog/imrelp.so")


def imrelp_available() -> bool:
    """True if rsyslog's imrelp module is installed (Debian package rsyslog-relp)."""
    return any(glob.glob(p) for p in _IMRELP)


@pytest.fixture
def rsyslog_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RsyslogReceiver]]:
    """Make started RsyslogReceivers (keyword arguments go to RsyslogReceiver); all stopped at teardown."""
    made: list[RsyslogReceiver] = []

    def make(**kwargs: Any) -> RsyslogReceiver:
        if not rsyslog_available():
            pytest.skip("rsyslogd is not installed")
        r = RsyslogReceiver(tmp_path_factory.mktemp("rsyslog"), **kwargs)
        made.append(r)
        r.start()
        return r

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def relp_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelpReceiver]:
    """One started rsyslog imrelp receiver (plain and TLS RELP inputs); stopped at teardown."""
    if not rsyslog_available():
        pytest.skip("rsyslogd is not installed")
    if not imrelp_available():
        pytest.skip("rsyslog's imrelp module is not installed (Debian package rsyslog-relp)")
    r = RelpReceiver(tmp_path_factory.mktemp("relp"))
    r.start()
    yield r
    r.stop()


@pytest.fixture
def rsyslog(rsyslog_factory: Callable[..., RsyslogReceiver]) -> RsyslogReceiver:
    """One started rsyslog receiver for the test."""
    return rsyslog_factory()


DEFAULTS_TEMPLATE = Path(__file__).with_name("rsyslog-defaults.conf.in")


class DefaultLimitsReceiver(RsyslogReceiver):
    """An rsyslogd at its default size limits: imtcp with LF framing (input `tcp_lf`), imtcp with octet
    counting (`tcp_oc`) and imrelp (`relp`), all writing `INPUTNAME RAWMSG` lines to DIR/out/raw.log."""

    template: ClassVar[Path] = DEFAULTS_TEMPLATE

    def __init__(self, directory: Path, **kwargs: Any) -> None:
        self.tcp_lf_port = free_port()
        self.tcp_oc_port = free_port()
        self.relp_port = free_port()
        super().__init__(directory, **kwargs)

    def _conf_values(self) -> dict[str, str]:
        return {
            "DIR": str(self.directory),
            "TCP_LF_PORT": str(self.tcp_lf_port),
            "TCP_OC_PORT": str(self.tcp_oc_port),
            "RELP_PORT": str(self.relp_port),
        }

    def _ports(self) -> set[int]:
        return {self.tcp_lf_port, self.tcp_oc_port, self.relp_port}

    def input_entry(self, name: str, input_name: str, **extra: Any) -> dict[str, Any]:
        """A config.json "server" object for one input: tcp_lf, tcp_oc or relp."""
        protocol, port, framing = {
            "tcp_lf": ("TCP", self.tcp_lf_port, "lf"),
            "tcp_oc": ("TCP", self.tcp_oc_port, "octet-counting"),
            "relp": ("RELP", self.relp_port, None),
        }[input_name]
        entry: dict[str, Any] = {
            "name": name,
            "server_protocol": protocol,
            "server_host": "127.0.0.1",
            "server_port": port,
        }
        if framing is not None:
            entry["framing"] = framing
        entry.update(extra)
        return entry
