"""A real syslog-ng receiver for tests: TCP with LF framing, UDP, and RFC 6587 octet counting (the
`syslog()` source), on free ports of 127.0.0.1, writing each message it made as one JSON line.

    r = SyslogNgReceiver(tmp_path)        # writes syslog-ng.conf, picks free ports
    r.start()                             # syslog-ng -F ...; waits until the TCP ports accept
    r.server_entry("s1", "TCP")           # a config.json "server" object (framing "lf" on TCP)
    r.records()                           # every message syslog-ng made, in order (dicts)
    r.stop()

Each record holds `raw` (the message as syslog-ng read it off the wire, framing removed: `$RAWMSG`),
`src` (the source: `s_tcp`, `s_udp`, `s_oc`), and syslog-ng's own `HOST`, `PROGRAM`, `MESSAGE` and
`LEGACY_MSGHDR`. A message syslog-ng broke into fragments shows up as several records. A fourth source
(`KV`, TCP) parses LEEF with a `^` delimiter the syslog-ng 3.x way (csv-parser, kv-parser) into
DIR/kv.json (`kv_records`).

syslog-ng and rsyslog conflict as Debian packages, so the tests do not install syslog-ng: they run a
`syslog-ng` on PATH, `SIEMCONN_SYSLOG_NG` (the binary), or the Debian package unpacked by
`scripts/fetch_syslog_ng.py` into `SIEMCONN_SYSLOG_NG_DIR` (default ~/.cache/siemconn/syslog-ng).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from siemconn.devtools.harness import free_port

__all__ = ["SyslogNgReceiver", "syslog_ng_available", "syslog_ng_command"]

_CONF = """@version: 3.38
options {{ keep-hostname(yes); use-dns(no); dns-cache(no); use-fqdn(no); stats-freq(0); }};
source s_tcp {{ network(ip("127.0.0.1") port({tcp}) transport("tcp") flags(store-raw-message)); }};
source s_udp {{ network(ip("127.0.0.1") port({udp}) transport("udp") flags(store-raw-message)); }};
source s_oc {{ syslog(ip("127.0.0.1") port({oc}) transport("tcp") flags(store-raw-message)); }};
destination d_out {{ file("{out}" template("$(format-json --key HOST --key PROGRAM --key MESSAGE
  --key LEGACY_MSGHDR --pair raw=$RAWMSG --pair src=${{SOURCE}})\\n")); }};
log {{ source(s_tcp); source(s_udp); source(s_oc); destination(d_out); }};

# LEEF with a "^" delimiter, parsed the syslog-ng 3.x way: csv-parser for the header, kv-parser for the
# attributes (what docs/formats.md's collectors table describes)
source s_kv {{ network(ip("127.0.0.1") port({kv}) transport("tcp") flags(store-raw-message)); }};
parser p_leef {{
  csv-parser(columns(".leef.version", ".leef.vendor", ".leef.product", ".leef.product_version",
                     ".leef.event_id", ".leef.delimiter", ".leef.attributes")
             delimiters(chars("|")) quote-pairs("") flags(greedy)
             template("${{LEGACY_MSGHDR}}${{MESSAGE}}"));
  kv-parser(prefix(".kv.") pair-separator("^") template("${{.leef.attributes}}"));
}};
destination d_kv {{ file("{kv_out}" template("$(format-json --scope nv-pairs --key .kv.* --key .leef.*
  --pair raw=$RAWMSG)\\n")); }};
log {{ source(s_kv); parser(p_leef); destination(d_kv); }};
"""


def _unpacked_root() -> Path:
    base = os.environ.get("SIEMCONN_SYSLOG_NG_DIR") or str(Path.home() / ".cache" / "siemconn" / "syslog-ng")
    return Path(base) / "root"


def syslog_ng_command() -> tuple[list[str], dict[str, str]] | None:
    """The command that starts syslog-ng (with its module path) and its environment, or None."""
    env = dict(os.environ)
    explicit = os.environ.get("SIEMCONN_SYSLOG_NG") or shutil.which("syslog-ng")
    if explicit and os.access(explicit, os.X_OK):
        return [explicit], env
    root = _unpacked_root()
    binary = root / "usr" / "sbin" / "syslog-ng"
    if not os.access(binary, os.X_OK):
        return None
    libs = [root / "usr" / "lib" / "syslog-ng", root / "usr" / "lib" / "x86_64-linux-gnu"]
    libs += [root / "lib" / "x86_64-linux-gnu"]
    env["LD_LIBRARY_PATH"] = ":".join([str(p) for p in libs] + [env.get("LD_LIBRARY_PATH", "")])
    modules = sorted((root / "usr" / "lib" / "syslog-ng").glob("3.*"))
    if not modules:
        return None
    return [str(binary), f"--module-path={modules[-1]}"], env


def syslog_ng_available() -> bool:
    """Whether a syslog-ng binary that runs is at hand."""
    cmd = syslog_ng_command()
    if cmd is None:
        return False
    try:
        done = subprocess.run(
            [*cmd[0], "--version"], env=cmd[1], capture_output=True, timeout=20, check=False
        )
    except OSError:
        return False
    return done.returncode == 0


class SyslogNgReceiver:
    """One syslog-ng subprocess writing every message it makes to DIR/out.json, one JSON object a line."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.tcp_port = free_port()
        self.udp_port = free_port()
        self.oc_port = free_port()
        self.kv_port = free_port()
        self.out = self.directory / "out.json"
        self.kv_out = self.directory / "kv.json"
        self.conf = self.directory / "syslog-ng.conf"
        ports = {"tcp": self.tcp_port, "udp": self.udp_port, "oc": self.oc_port, "kv": self.kv_port}
        self.conf.write_text(_CONF.format(out=self.out, kv_out=self.kv_out, **ports))
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Start syslog-ng in the foreground and wait until its TCP ports accept connections."""
        found = syslog_ng_command()
        if found is None:
            raise RuntimeError("no syslog-ng binary (see tests/support/syslogng.py)")
        cmd, env = found
        d = self.directory
        log = open(d / "syslog-ng.stderr", "ab")  # noqa: SIM115 - owned by the process
        self._proc = subprocess.Popen(
            [
                *cmd,
                "-F",
                "--no-caps",
                f"--cfgfile={self.conf}",
                f"--persist-file={d / 'syslog-ng.persist'}",
                f"--pidfile={d / 'syslog-ng.pid'}",
                f"--control={d / 'syslog-ng.ctl'}",
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        pending = {self.tcp_port, self.oc_port, self.kv_port}
        while pending:
            if self._proc.poll() is not None:
                raise RuntimeError(f"syslog-ng exited with {self._proc.returncode}: {self.stderr()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"syslog-ng did not open ports {sorted(pending)}: {self.stderr()[-2000:]}")
            for port in list(pending):
                with socket.socket() as s:
                    s.settimeout(0.5)
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        pending.discard(port)
            if pending:
                time.sleep(0.05)
        time.sleep(0.1)  # the UDP source starts with the TCP ones; give it a moment

    def stop(self, timeout: float = 15.0) -> None:
        """Stop syslog-ng (SIGTERM, then SIGKILL after `timeout`)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout)

    def stderr(self) -> str:
        p = self.directory / "syslog-ng.stderr"
        return p.read_text(errors="replace") if p.exists() else ""

    def records(self) -> list[dict[str, Any]]:
        """Every message syslog-ng made so far (complete lines only), in order."""
        return self._read(self.out)

    def kv_records(self) -> list[dict[str, Any]]:
        """Every message of the `KV` source so far, parsed: `_leef` (header columns), `_kv` (attributes)."""
        return self._read(self.kv_out)

    @staticmethod
    def _read(path: Path) -> list[dict[str, Any]]:
        if not path.exists():
            return []
        lines = path.read_bytes().decode("utf-8", errors="surrogateescape").split("\n")[:-1]
        return [json.loads(line) for line in lines]

    def server_entry(self, name: str, transport: str, **extra: Any) -> dict[str, Any]:
        """A config.json "server" object: "TCP" (LF framing), "UDP", "OC" (TCP, octet counting), or "KV"
        (TCP, LF framing, LEEF parsed with csv-parser and kv-parser into `kv_records`)."""
        port = {"TCP": self.tcp_port, "UDP": self.udp_port, "OC": self.oc_port, "KV": self.kv_port}[transport]
        entry: dict[str, Any] = {
            "name": name,
            "server_protocol": "UDP" if transport == "UDP" else "TCP",
            "server_host": "127.0.0.1",
            "server_port": port,
        }
        if transport != "UDP":
            entry["framing"] = "octet-counting" if transport == "OC" else "lf"
        entry.update(extra)
        return entry
