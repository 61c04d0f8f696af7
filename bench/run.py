"""`make bench`: end-to-end throughput, CPU, memory, startup and idle cost of siemconn, plus the queue bench.

What runs (all on 127.0.0.1, each in its own process):

* the fake RUX tenant (`python -m siemconn.devtools.fake_rux`) seeded with 100,000 detections, 10,000 audit
  and 10,000 entity_scoring events. It pre-renders every event's JSON once and serves a page by joining
  cached bytes; it is told (POST /_fake/config) not to hide entity score decreases, so a default client
  gets all 120,000 events.
* the counting sink `bench/sink.py` (TCP, UDP, TLS with trustme certificates, or RELP: it answers every
  message `rsp 200` at once, so the figure is siemconn's RELP client, not a receiver's storage),
* `python -m siemconn run --config ...` with pull_at_startup, a fresh data_dir, default batch_size and the
  cron of every stream at every 10 s (`*/10 * * * * *`: in six fields the seconds come first).

For each protocol it reports events/s (first to last delivered event, and from process start), the
siemconn process's CPU seconds per event (user+sys from /proc/PID/stat; whole run including interpreter
start, and excluding the startup CPU), its peak RSS (VmHWM), the time from process start to the first
event at the sink, and, for TCP only, the CPU used over `--idle-seconds` with nothing to fetch. Then it
runs bench/queue_bench.py's run() at a 10,000 vs 200,000-event backlog (`--full`: 10,000 vs 1,000,000,
about 3 more minutes and 1.3 GB of disk), and bench/floor.py's run(): what orjson.loads and the
json.dumps-identical encoder alone cost per event on the same kind of events (the floor under the CPU
figures).

    python bench/run.py [--full] [--protocols tcp,udp,tls] [--idle-seconds 60] [--no-write]

It prints one table at the end and rewrites the measured block of docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import floor  # noqa: E402
import queue_bench  # noqa: E402

from siemconn.devtools.harness import (  # noqa: E402
    config_skeleton,
    free_port,
    make_server_certs,
    start_fake_tenant,
    write_config,
)

PY = sys.executable
SEED = {"detections": 100_000, "audit": 10_000, "entity": 10_000}
EXPECTED = sum(SEED.values())
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
TICK = os.sysconf("SC_CLK_TCK")
PERF_DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def proc_cpu(pid: int) -> float:
    """user+sys CPU seconds of pid (this process only)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(("VmHWM:", "VmRSS:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


@dataclass
class Sink:
    proc: subprocess.Popen[str]
    port: int
    last: dict[str, Any] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)

    def _reader(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("ready"):
                self.ready.set()
            else:
                self.last = obj

    @classmethod
    def start(cls, proto: str, certs: dict[str, str]) -> Sink:
        port = free_port(socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
        cmd = [PY, str(ROOT / "bench" / "sink.py"), "--port", str(port), "--proto", proto]
        if proto == "tls":
            cmd += ["--cert", certs["cert"], "--key", certs["key"]]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        sink = cls(proc, port)
        threading.Thread(target=sink._reader, daemon=True).start()
        if not sink.ready.wait(15):
            proc.kill()
            raise RuntimeError(f"{proto} sink did not start")
        return sink

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_fake(workdir: Path) -> tuple[subprocess.Popen[str], str, float]:
    t0 = time.monotonic()
    args = [
        "--port", "0", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
        "--seed-detections", str(SEED["detections"]), "--seed-audit", str(SEED["audit"]),
        "--seed-entity", str(SEED["entity"]), "--seed-span-hours", "6",
    ]  # fmt: skip
    proc, url = start_fake_tenant(args, cwd=workdir, timeout=120)
    req = urllib.request.Request(
        url + "/_fake/config",
        data=json.dumps({"include_score_decreases_default": True}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=10).read()
    return proc, url, time.monotonic() - t0


def fake_state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/_fake/state", timeout=10) as r:
        state: dict[str, Any] = json.loads(r.read())
    return state


def fake_cpu(proc: subprocess.Popen[str]) -> float:
    return proc_cpu(proc.pid)


def make_certs(workdir: Path) -> dict[str, str]:
    files = make_server_certs(workdir, "127.0.0.1", "localhost")
    return {"ca": str(files.ca), "cert": str(files.cert), "key": str(files.key)}


def write_variant_config(
    run_dir: Path,
    proto: str,
    port: int,
    certs: dict[str, str],
    batch: int | None,
    page_size: int | None = None,
) -> Path:
    server: dict[str, Any] = {
        "name": f"bench_{proto}",
        "server_protocol": proto.upper(),
        "server_host": "127.0.0.1",
        "server_port": port,
    }
    if proto == "tls":
        server["tls_ca_file"] = certs["ca"]
    if proto == "udp":
        server["udp_rate_limit"] = 0  # the sink reads with a 64 MB buffer: measure the unpaced sender
    options: dict[str, Any] = {"pull_at_startup": True}
    if batch is not None:
        options["batch_size"] = batch
    if page_size is not None:
        options["page_size"] = page_size
    # seconds come first in a 6-field expression (aiocron 2 / cronsim): every 10 s
    cfg = config_skeleton(run_dir, [server], schedule="*/10 * * * * *", **options)
    return write_config(run_dir / "config.json", cfg)


def run_variant(
    proto: str,
    url: str,
    fake: subprocess.Popen[str],
    workdir: Path,
    certs: dict[str, str],
    idle: float,
    profile: str | None = None,
    page_size: int | None = None,
) -> dict[str, Any]:
    label = proto
    proto, _, b = proto.partition("@")
    batch = int(b) if b else None
    run_dir = workdir / label.replace("@", "_")
    run_dir.mkdir()
    sink = Sink.start(proto, certs)
    cfg = write_variant_config(run_dir, proto, sink.port, certs, batch, page_size)
    env = {**os.environ, "BASE_URL": url, "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET}
    out = open(run_dir / "siemconn.out", "w", encoding="utf-8")  # noqa: SIM115
    fake_cpu0 = fake_cpu(fake)
    t_start = time.time()
    proc = subprocess.Popen(
        [PY, "-m", "siemconn", "run", "--config", str(cfg)], env=env, stdout=out, stderr=out
    )
    spy = None
    if profile:  # py-spy (pip install py-spy) samples the process; collapsed stacks for flamegraph tools
        spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(proc.pid), "--rate", "250", "--format", "raw", "--nonblocking",
             "-o", f"{profile}.{label}.txt"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    res: dict[str, Any] = {
        "protocol": proto,
        "label": label,
        "batch_size": batch or 500,
        "page_size": page_size,
    }
    cpu_at_first: float | None = None
    deadline = time.monotonic() + 150
    hwm = 0
    last_count, stalled_since = 0, time.monotonic()
    try:
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if proc.poll() is not None:
                raise RuntimeError(f"siemconn exited with {proc.returncode}; see {run_dir / 'siemconn.out'}")
            hwm = max(hwm, proc_status(proc.pid).get("VmHWM", 0))
            count = int(sink.last.get("count", 0))
            if count and cpu_at_first is None:
                cpu_at_first = proc_cpu(proc.pid)
            if count >= EXPECTED:
                break
            if count != last_count:
                last_count, stalled_since = count, time.monotonic()
            elif proto == "udp" and count and time.monotonic() - stalled_since > 5:
                break  # UDP may lose datagrams on the host; stop when nothing more arrives
        time.sleep(0.3)  # the sink prints every 0.25 s
        cpu_total = proc_cpu(proc.pid)
        st = sink.last
        count = int(st.get("count", 0))
        first, last = st.get("first"), st.get("last")
        res.update(
            events=count,
            bytes=int(st.get("bytes", 0)),
            complete=count >= EXPECTED,
            first_event_s=(first - t_start) if first else None,
            total_s=(last - t_start) if last else None,
            eps_first_to_last=(count - 1) / (last - first) if first and last and last > first else None,
            eps_from_start=count / (last - t_start) if last else None,
            cpu_s=cpu_total,
            cpu_us_per_event=cpu_total * 1e6 / max(count, 1),
            cpu_startup_s=cpu_at_first,
            cpu_us_per_event_steady=(cpu_total - (cpu_at_first or 0)) * 1e6 / max(count, 1),
            peak_rss_kb=max(hwm, proc_status(proc.pid).get("VmHWM", 0)),
            fake_cpu_s=fake_cpu(fake) - fake_cpu0,
            sink_cpu_s=proc_cpu(sink.proc.pid),
        )
        res["avg_event_bytes"] = res["bytes"] / max(count, 1)
        if idle > 0:
            c0, t0 = proc_cpu(proc.pid), time.monotonic()
            time.sleep(idle)
            res["idle_seconds"] = time.monotonic() - t0
            res["idle_cpu_pct"] = (proc_cpu(proc.pid) - c0) * 100 / res["idle_seconds"]
            res["events_after_idle"] = int(sink.last.get("count", 0))
        res["peak_rss_kb"] = max(res["peak_rss_kb"], proc_status(proc.pid).get("VmHWM", 0))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            res["exit_code"] = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            res["exit_code"] = "killed"
        out.close()
        sink.stop()
        if spy is not None:
            spy.wait(30)
    return res


def machine() -> dict[str, Any]:
    model = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="ascii") as fh:
        mem_kb = int(fh.readline().split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def fmt(v: Any, spec: str = ".1f") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def bottleneck(r: dict[str, Any]) -> str:
    """Which process was busiest during the run (CPU seconds over wall seconds)."""
    wall = r.get("total_s") or 0
    if not wall:
        return "n/a"
    loads = {
        "siemconn": r["cpu_s"] / wall,
        "fake RUX": r["fake_cpu_s"] / wall,
        "sink": r["sink_cpu_s"] / wall,
    }
    name = max(loads, key=lambda k: loads[k])
    parts = ", ".join(f"{k} {v * 100:.0f}%" for k, v in loads.items())
    return f"{name} ({parts} of one core)"


def table(
    runs: list[dict[str, Any]], qb: dict[str, Any], meta: dict[str, Any], fl: dict[str, float] | None = None
) -> str:
    rows: list[tuple[str, str, str]] = []
    for r in runs:
        p = f"{r['protocol'].upper()} batch {r['batch_size']}"
        if r.get("page_size"):
            p += f" page_size {r['page_size']}"
        rows += [
            (f"{p}: events delivered / expected", f"{r['events']:,} / {EXPECTED:,}", "all (TCP/TLS/RELP)"),
            (f"{p}: events/s, first to last event", fmt(r["eps_first_to_last"], ",.0f"), ">= 45,000 (TCP)"),
            (f"{p}: events/s, from process start", fmt(r["eps_from_start"], ",.0f"), ""),
            (f"{p}: siemconn CPU us/event (whole run)", fmt(r["cpu_us_per_event"]), "<= 20"),
            (f"{p}: siemconn CPU us/event (after first event)", fmt(r["cpu_us_per_event_steady"]), ""),
            (f"{p}: siemconn peak RSS MB (VmHWM)", fmt(r["peak_rss_kb"] / 1024), "<= 80"),
            (f"{p}: first event after process start s", fmt(r["first_event_s"], ".2f"), "<= 2"),
            (f"{p}: CPU s siemconn / fake RUX / sink", "{} / {} / {}".format(
                fmt(r["cpu_s"], ".2f"), fmt(r["fake_cpu_s"], ".2f"), fmt(r["sink_cpu_s"], ".2f")), ""),
            (f"{p}: bottleneck (busiest process)", bottleneck(r), ""),
        ]  # fmt: skip
        if "idle_cpu_pct" in r:
            rows.append(
                (
                    f"{p}: idle CPU %, {r['idle_seconds']:.0f} s, cron every 10 s",
                    fmt(r["idle_cpu_pct"], ".2f"),
                    "< 1",
                )
            )
    avg = next((r["avg_event_bytes"] for r in runs if r["protocol"] == "tcp"), None)
    if avg:
        rows.append(("average syslog line bytes (TCP, incl. header+LF)", fmt(avg, ",.0f"), "~1.2 KB"))
    small, large = qb["results"][0], qb["results"][-1]
    s, lg = f"{small['backlog_events']:,}", f"{large['backlog_events']:,}"
    rows += [
        (f"queue commit_page us/event at {s} / {lg}",
         f"{small['commit_page_us_per_event']} / {large['commit_page_us_per_event']}", ""),
        (f"queue read_batch+ack us/event at {s} / {lg}",
         f"{small['read_batch_ack_us_per_event']} / {large['read_batch_ack_us_per_event']}", ""),
        (f"queue cost ratio {lg}/{s} (commit, read+ack)",
         f"{qb['commit_ratio']}, {qb['read_ack_ratio']}", "<= 1.2"),
        (f"queue bench peak RSS MB with {lg} queued", fmt(large["peak_rss_kb"] / 1024), "<= 80"),
    ]  # fmt: skip
    if fl:
        rows += [
            ("library floor: orjson.loads us/event (page of 1,000)", fmt(fl["parse_us"]), ""),
            ("library floor: json.dumps-identical encode us/event", fmt(fl["encode_us"]), ""),
            ("library floor: parse + encode us/event (bench/floor.py)", fmt(fl["floor_us"]), "<= 20"),
            ("library floor: events/s on one GIL (1e6 / floor)", fmt(fl["max_events_per_s"], ",.0f"), ">= 45,000"),
            ("for comparison: orjson.dumps (not the reference shape) us/event", fmt(fl["orjson_dumps_us"]), ""),
        ]  # fmt: skip
    w1 = max(len(a) for a, _, _ in rows)
    w2 = max(len(b) for _, b, _ in rows)
    lines = [
        f"| {'measure':<{w1}} | {'value':>{w2}} | target |",
        f"|{'-' * (w1 + 2)}|{'-' * (w2 + 2)}|--------|",
    ]
    lines += [f"| {a:<{w1}} | {b:>{w2}} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = PERF_DOC.read_text(encoding="utf-8") if PERF_DOC.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in doc or END not in doc:
        doc = doc.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    PERF_DOC.write_text(f"{head}{BEGIN}\n{text.rstrip()}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every `finally` stops the processes it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="queue bench at 1,000,000 queued events (+3 min)")
    ap.add_argument(
        "--protocols",
        default="tcp@2000,tcp,relp,relp@2000,udp@2000,tls@2000",
        help="variants PROTO[@BATCH_SIZE]; batch_size defaults to 500 (the config default)",
    )
    ap.add_argument("--idle-seconds", type=float, default=60.0)
    ap.add_argument("--no-write", action="store_true", help="do not rewrite docs/performance.md")
    ap.add_argument("--profile", default=None, help="record py-spy collapsed stacks to PREFIX.<protocol>.txt")
    ap.add_argument(
        "--page-size", type=int, default=None, help="config page_size (default: the config default)"
    )
    ap.add_argument("--queue-sizes", default=None, help="override the queue bench backlogs, e.g. 10000,50000")
    args = ap.parse_args(argv)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="siemconn-bench-"))
    runs: list[dict[str, Any]] = []
    try:
        certs = make_certs(workdir)
        fake, url, fake_start_s = start_fake(workdir)
        try:
            state = fake_state(url)
            print(f"fake RUX ready in {fake_start_s:.1f} s: {state['heads']}", file=sys.stderr, flush=True)
            for proto in args.protocols.split(","):
                idle = args.idle_seconds if proto == "tcp" else 0.0  # the default-config run
                print(f"running {proto} ...", file=sys.stderr, flush=True)
                r = run_variant(proto, url, fake, workdir, certs, idle, args.profile, args.page_size)
                print(json.dumps(r), file=sys.stderr, flush=True)
                runs.append(r)
        finally:
            fake.send_signal(signal.SIGTERM)
            try:
                fake.wait(10)
            except subprocess.TimeoutExpired:
                fake.kill()
        sizes: tuple[int, ...] = (10_000, 1_000_000) if args.full else (10_000, 200_000)
        if args.queue_sizes:
            sizes = tuple(int(x) for x in args.queue_sizes.split(","))
        print(f"queue bench at {sizes} ...", file=sys.stderr, flush=True)
        import logging

        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        qb = queue_bench.run(sizes)
        print("library floor ...", file=sys.stderr, flush=True)
        fl = floor.run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta = machine()
    elapsed = time.monotonic() - started
    tab = table(runs, qb, meta, fl)
    cmd = "make bench" + ("  (python bench/run.py --full)" if args.full else "  (python bench/run.py)")
    block = "\n".join(
        [
            f"Measured {dt.date.today().isoformat()} with `{cmd}` in {elapsed:.0f} s on: {meta['cpu']}, "
            f"{meta['cores']} cores, {meta['ram_gb']} GB RAM, Python {meta['python']}, "
            f"Linux {meta['kernel']}.",
            "",
            tab,
        ]
    )
    if not args.no_write:
        write_doc(block)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
