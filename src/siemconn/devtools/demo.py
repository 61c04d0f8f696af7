"""`make demo`: the fake RUX tenant, a printing syslog receiver and siemconn, wired together locally.

No Vectra account, no root and no network are needed. Ctrl-C stops everything that was started.

The demo routes streams: `demo-tcp` takes every stream, `demo-udp` only detections and entity scoring.
Both have the size budget the docs recommend (`max_message_size` 8000, `oversize` trim): the fake
tenant's large events arrive trimmed, with their `siemconn_trimmed` marker.
The opt-in `health` and `lockdown` streams are on (the fake tenant locks and unlocks entities as it runs);
`--no-snapshots` turns them off. `--detailed` (`make demo DETAILED=1`) pulls detections from API v3.5 with
`size=detailed` and prints whole lines, so the detailed context (source and destination hosts and
accounts, summary, notes, ...) is visible.

Stopping: a terminal's Ctrl-C sends SIGINT to the whole foreground process group, so the three children
already have it; the launcher then only waits for them (forwarding a SIGTERM on top would reach siemconn
0.5 ms after the SIGINT). A SIGTERM to the launcher, or a SIGINT that did not come from its terminal, is
forwarded as SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from siemconn.config import DEFAULT_FORMAT
from siemconn.devtools.harness import config_skeleton, free_port, start_fake_tenant, write_config
from siemconn.syslog.formats import FORMATS

__all__ = ["DEMO_CLIENT_ID", "DEMO_SECRET", "demo_config", "main"]

DEMO_CLIENT_ID = "demo-client"
DEMO_SECRET = "demo-secret-not-a-real-one"


def demo_config(
    tcp_port: int,
    udp_port: int,
    workdir: Path,
    fmt: str = DEFAULT_FORMAT,
    *,
    snapshots: bool = True,
    detailed: bool = False,
) -> dict[str, object]:
    """Two servers on the receiver: TCP takes every stream, UDP detections and entity scoring only;
    every event stream every 5 s, health every 30 s and lockdown every 5 s unless `snapshots` is off;
    `detailed`: API v3.5 with detection_size detailed."""
    servers: list[dict[str, object]] = [
        {"name": "demo-tcp", "server_protocol": "tcp", "server_host": "127.0.0.1", "server_port": tcp_port},
        {
            "name": "demo-udp",
            "server_protocol": "udp",
            "server_host": "127.0.0.1",
            "server_port": udp_port,
            "streams": ["detections", "entity_scoring"],
        },
    ]
    for server in servers:  # a size budget that fits rsyslog's default limit (docs/formats.md)
        server.update({"max_message_size": 8000, "oversize": "trim"})
        if fmt != DEFAULT_FORMAT:
            server["format"] = fmt
    config = config_skeleton(
        workdir, servers, schedule="*/5 * * * * *", log_format="console", min_free_disk_mb=0
    )
    if detailed:
        config["configuration"].update({"api_version": "v3.5", "detection_size": "detailed"})
    config["configuration"]["scheduler"].update(
        {
            "health": "*/30 * * * * *" if snapshots else None,
            "lockdown": "*/5 * * * * *" if snapshots else None,
        }
    )
    return config


def terminal_signalled_group() -> bool:
    """True if this process is in its terminal's foreground group: a Ctrl-C there reached every child."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                return True
        except OSError:
            continue
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run siemconn against the built-in fake RUX tenant")
    ap.add_argument("--workdir", default=".demo", help="scratch folder (default .demo)")
    ap.add_argument(
        "--seconds", type=float, default=0, help="stop after this many seconds (0 = until Ctrl-C)"
    )
    ap.add_argument(
        "--no-snapshots", action="store_true", help="turn the opt-in health and lockdown streams off"
    )
    ap.add_argument(
        "--format",
        choices=tuple(FORMATS),
        default=os.environ.get("DEMO_FORMAT") or DEFAULT_FORMAT,
        help="the servers' format (default legacy, or $DEMO_FORMAT); `make demo FORMAT=cef` shows CEF",
    )
    ap.add_argument(
        "--detailed",
        action="store_true",
        default=bool(os.environ.get("DEMO_DETAILED")),
        help="detections from API v3.5 with size=detailed, lines printed whole (or $DEMO_DETAILED)",
    )
    args = ap.parse_args(argv)
    # SIGTERM (kill, timeout) stops the demo like Ctrl-C: every process it started is stopped too
    received: list[int] = []

    def _on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    workdir = Path(args.workdir).resolve()
    # the fake tenant is new on every run (ids start at 1), so a queue left by an earlier run would hold
    # checkpoints from another tenant: start the demo's queue afresh
    shutil.rmtree(workdir / "data", ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    api_port, tcp_port, udp_port = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    config_path = workdir / "config.json"
    write_config(
        config_path,
        demo_config(
            tcp_port, udp_port, workdir, args.format, snapshots=not args.no_snapshots, detailed=args.detailed
        ),
    )
    py = sys.executable
    procs: list[subprocess.Popen[str]] = []
    try:
        fake, _url = start_fake_tenant(
            [
                "--port",
                str(api_port),
                "--client-id",
                DEMO_CLIENT_ID,
                "--client-secret",
                DEMO_SECRET,
                "--seed-detections",
                "30",
                "--seed-audit",
                "10",
                "--seed-entity",
                "10",
                "--seed-lockdown",
                "2",
                "--generate-interval",
                "3",
            ]
        )
        procs.append(fake)
        receiver = subprocess.Popen(
            [
                py,
                "-m",
                "siemconn.devtools.receiver",
                "--tcp-port",
                str(tcp_port),
                "--udp-port",
                str(udp_port),
                "--width",
                "0" if args.detailed else "200",
            ],
            stdout=sys.stdout,
            text=True,
        )
        procs.append(receiver)
        time.sleep(0.5)
        env = {
            **os.environ,
            "BASE_URL": f"http://127.0.0.1:{api_port}",
            "CLIENT_ID": DEMO_CLIENT_ID,
            "CLIENT_SECRET": DEMO_SECRET,
        }
        print(
            f"demo: fake RUX on 127.0.0.1:{api_port}, receiver on tcp/{tcp_port} and udp/{udp_port}, "
            f"config {config_path}; siemconn logs in {workdir / 'logs'}. Ctrl-C stops.",
            flush=True,
        )
        with open(workdir / "siemconn.out", "w") as sout:
            connector = subprocess.Popen(
                [py, "-m", "siemconn", "run", "--config", str(config_path)],
                env=env,
                stdout=sout,
                stderr=subprocess.STDOUT,
                text=True,
            )
            procs.append(connector)
            deadline = time.monotonic() + args.seconds if args.seconds else None
            while all(p.poll() is None for p in procs):
                if deadline and time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            for p in procs:
                if p.poll() is not None and p.returncode not in (0, -signal.SIGTERM):
                    name = os.fsdecode(p.args[2]) if isinstance(p.args, list) else p.args
                    print(f"demo: {name!s} exited with {p.returncode}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ndemo: stopping", flush=True)
    finally:
        # a Ctrl-C from the terminal reached the children too: do not send them a second signal
        forward = not (received[:1] == [signal.SIGINT] and terminal_signalled_group())
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the waiting below
        for p in reversed(procs):
            if p.poll() is None and forward:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=12)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
