"""`make demo`: the fake RUX tenant, a printing syslog receiver and siemconn, wired together locally.

No Vectra account, no root and no network are needed. Ctrl-C stops everything that was started.
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

from siemconn.devtools.harness import config_skeleton, free_port, start_fake_tenant, write_config

__all__ = ["DEMO_CLIENT_ID", "DEMO_SECRET", "demo_config", "main"]

DEMO_CLIENT_ID = "demo-client"
DEMO_SECRET = "demo-secret-not-a-real-one"


def demo_config(tcp_port: int, udp_port: int, workdir: Path) -> dict[str, object]:
    """Two servers (TCP and UDP) on the receiver, every stream every 5 s, console logs."""
    servers: list[dict[str, object]] = [
        {"name": "demo-tcp", "server_protocol": "tcp", "server_host": "127.0.0.1", "server_port": tcp_port},
        {"name": "demo-udp", "server_protocol": "udp", "server_host": "127.0.0.1", "server_port": udp_port},
    ]
    return config_skeleton(
        workdir, servers, schedule="*/5 * * * * *", log_format="console", min_free_disk_mb=0
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run siemconn against the built-in fake RUX tenant")
    ap.add_argument("--workdir", default=".demo", help="scratch folder (default .demo)")
    ap.add_argument(
        "--seconds", type=float, default=0, help="stop after this many seconds (0 = until Ctrl-C)"
    )
    args = ap.parse_args(argv)
    # SIGTERM (kill, timeout) stops the demo like Ctrl-C: every process it started is stopped too
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(args.workdir).resolve()
    # the fake tenant is new on every run (ids start at 1), so a queue left by an earlier run would hold
    # checkpoints from another tenant: start the demo's queue afresh
    shutil.rmtree(workdir / "data", ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    api_port, tcp_port, udp_port = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    config_path = workdir / "config.json"
    write_config(config_path, demo_config(tcp_port, udp_port, workdir))
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
                "200",
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
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=12)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
