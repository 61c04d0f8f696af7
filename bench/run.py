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
import re
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

import drain  # noqa: E402
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


@dataclass(frozen=True)
class Side:
    """Which code runs siemconn: this tree, or another commit's src/ extracted with `git archive` (A/B)."""

    name: str
    src: Path | None = None  # None: this tree (the installed package)
    extra_env: tuple[tuple[str, str], ...] = ()  # e.g. SIEMCONN_GC=off, to measure one change alone

    def env(self) -> dict[str, str]:
        env = dict(self.extra_env)
        if self.src is not None:
            env["PYTHONPATH"] = str(self.src)
        return env


def extract(ref: str, workdir: Path) -> Side:
    """`git archive REF src` into workdir: the code of REF, run with PYTHONPATH ahead of the install."""
    dest = workdir / f"ab-{re.sub(r'[^A-Za-z0-9_.-]', '_', ref)}"
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return Side(ref, dest / "src")


def write_variant_config(
    run_dir: Path,
    proto: str,
    port: int,
    certs: dict[str, str],
    batch: int | None,
    page_size: int | None = None,
    extra: dict[str, Any] | None = None,
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
    options.update(extra or {})  # may replace the scheduler or data_dir too (the drain runs)
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
    side: Side = Side("branch"),
    extra: dict[str, Any] | None = None,
    expected: int = EXPECTED,
    tag: str = "",
) -> dict[str, Any]:
    label = proto
    proto, _, drain_size = proto.partition("+drain")  # e.g. tcp+drain5000: drain_batch_size 5000
    if drain_size:
        extra = {"drain_batch_size": int(drain_size), **(extra or {})}
    proto, _, b = proto.partition("@")
    batch = int(b) if b else None
    run_dir = Path(tempfile.mkdtemp(prefix=f"{label.replace('@', '_')}-{side.name}-", dir=workdir))
    sink = Sink.start(proto, certs)
    cfg = write_variant_config(run_dir, proto, sink.port, certs, batch, page_size, extra)
    env = {**os.environ, "BASE_URL": url, "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET}
    env.update(side.env())
    out = open(run_dir / "siemconn.out", "w", encoding="utf-8")  # noqa: SIM115
    fake_cpu0 = fake_cpu(fake)
    t_start = time.time()
    proc = subprocess.Popen(
        [PY, "-m", "siemconn", "run", "--config", str(cfg)], env=env, stdout=out, stderr=out
    )
    spy = None
    if profile:  # py-spy (pip install py-spy) samples the process; collapsed stacks for flamegraph tools
        spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(proc.pid), "--rate", "250", "--format", "raw", "--nonblocking", "--gil",
             "-o", f"{profile}.{label}.txt"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    res: dict[str, Any] = {
        "protocol": proto,
        "label": label,
        "batch_size": batch or 500,
        "page_size": page_size,
        "side": side.name,
        "tag": tag,
    }
    cpu_at_first: float | None = None
    deadline = time.monotonic() + max(150, expected / 5_000)
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
            if count >= expected:
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
            complete=count >= expected,
            expected=expected,
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


def _range(values: list[float | None], spec: str) -> str:
    """One figure, or the range over repeated runs."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    lo, hi = min(vals), max(vals)
    return (
        format(lo, spec) if format(lo, spec) == format(hi, spec) else f"{format(lo, spec)}-{format(hi, spec)}"
    )


def _median(values: list[float | None]) -> float | None:
    vals = sorted(v for v in values if v is not None)
    return vals[len(vals) // 2] if vals else None


E2E_METRICS: list[tuple[str, str, str, Any]] = [
    ("events delivered", "events", ",.0f", "all (TCP/TLS)"),
    ("events/s, first to last event", "eps_first_to_last", ",.0f", ""),
    ("events/s, from process start", "eps_from_start", ",.0f", ""),
    ("siemconn CPU us/event (whole run)", "cpu_us_per_event", ".1f", ""),
    ("siemconn CPU us/event (after first event)", "cpu_us_per_event_steady", ".1f", ""),
    ("siemconn peak RSS MB (VmHWM)", "peak_rss_mb", ".1f", "<= 80"),
    ("first event after process start s", "first_event_s", ".2f", "<= 2"),
    ("idle CPU %, cron every 10 s", "idle_cpu_pct", ".2f", "< 1"),
]


def table(
    runs: list[dict[str, Any]],
    drains: list[dict[str, Any]],
    sides: list[str],
    qb: dict[str, Any],
    fl: dict[str, float] | None = None,
) -> str:
    """One row per figure; one column per side of the A/B (ranges over the repeats of one run)."""
    for r in runs + drains:
        r["peak_rss_mb"] = r["peak_rss_kb"] / 1024
    rows: list[list[str]] = []
    blank = [""] * len(sides)

    def by_side(group: list[dict[str, Any]], key: str, spec: str) -> list[str]:
        return [_range([r.get(key) for r in group if r["side"] == side], spec) for side in sides]

    labels = list(dict.fromkeys(r["label"] for r in runs))
    for label in labels:
        group = [r for r in runs if r["label"] == label]
        r0 = group[0]
        p = f"{r0['protocol'].upper()} batch {r0['batch_size']}"
        if "+drain" in label:
            p += f" drain_batch_size {label.partition('+drain')[2]}"
        if r0.get("page_size"):
            p += f" page_size {r0['page_size']}"
        for name, key, spec, target in E2E_METRICS:
            if any(key in r for r in group):
                rows.append([f"{p}: {name}", *by_side(group, key, spec), target])
        rows.append([f"{p}: bottleneck (busiest process, last run)", *[
            next((bottleneck(r) for r in reversed(group) if r["side"] == side), "n/a") for side in sides
        ], ""])  # fmt: skip
        if len(sides) == 2:
            old = _median([r["cpu_us_per_event"] for r in group if r["side"] == sides[0]])
            new = _median([r["cpu_us_per_event"] for r in group if r["side"] == sides[1]])
            if old and new:
                rows.append([f"{p}: CPU per event {sides[0]} / {sides[1]} (medians)", "", f"{old / new:.2f}x",
                             ">= 1.6x"])  # fmt: skip
    for tag in dict.fromkeys(r["tag"] for r in drains):
        group = [r for r in drains if r["tag"] == tag]
        n = group[0]["expected"]
        p = f"drain of {n:,} stored events, TCP, {tag}"
        rows += [
            [f"{p}: events delivered", *by_side(group, "events", ",.0f"), "all"],
            [
                f"{p}: events/s, first to last event",
                *by_side(group, "eps_first_to_last", ",.0f"),
                ">= 40,000",
            ],
            [f"{p}: siemconn CPU us/event (whole run)", *by_side(group, "cpu_us_per_event", ".1f"), ""],
            [f"{p}: siemconn peak RSS MB (VmHWM)", *by_side(group, "peak_rss_mb", ".1f"), "<= 80"],
        ]
    avg = next((r["avg_event_bytes"] for r in runs if r["protocol"] == "tcp"), None)
    if avg:
        rows.append(
            ["average syslog line bytes (TCP, incl. header+LF)", *blank[:-1], fmt(avg, ",.0f"), "~1.2 KB"]
        )
    small, large = qb["results"][0], qb["results"][-1]
    sm, lg = f"{small['backlog_events']:,}", f"{large['backlog_events']:,}"
    pad = blank[:-1]
    rows += [
        [f"queue commit_page us/event at {sm} / {lg}", *pad,
         f"{small['commit_page_us_per_event']} / {large['commit_page_us_per_event']}", ""],
        [f"queue read_batch+ack us/event at {sm} / {lg}", *pad,
         f"{small['read_batch_ack_us_per_event']} / {large['read_batch_ack_us_per_event']}", ""],
        [f"queue cost ratio {lg}/{sm} (commit, read+ack)", *pad, f"{qb['commit_ratio']}, {qb['read_ack_ratio']}",
         "<= 1.2"],
        [f"queue bench peak RSS MB with {lg} queued", *pad, fmt(large["peak_rss_kb"] / 1024), "<= 80"],
    ]  # fmt: skip
    if fl:
        rows += [
            ["library: orjson.loads us/event (page of 1,000), collector running / paused", *pad,
             f"{fl['parse_us']:.1f} / {fl['parse_paused_us']:.1f}", ""],
            ["library: json.dumps-identical encode us/event, stdlib C / ujson (routed) / siemconn C", *pad,
             f"{fl['encode_us']:.1f} / {fl['encode_ujson_us']:.1f} / {fl['encode_c_us']:.1f}", ""],
            ["library: parse + encode us/event, before / now (bench/floor.py)", *pad,
             f"{fl['floor_us']:.1f} / {fl['fast_floor_us']:.1f}", ""],
            ["for comparison: json.dumps / orjson.dumps (not the reference shape) us/event", *pad,
             f"{fl['json_dumps_us']:.1f} / {fl['orjson_dumps_us']:.1f}", ""],
        ]  # fmt: skip
    head = ["measure", *sides, "target"]
    widths = [max(len(row[c]) for row in [head, *rows]) for c in range(len(head))]
    out = [
        "| "
        + " | ".join(
            h.ljust(w) if c == 0 else h.rjust(w) for c, (h, w) in enumerate(zip(head, widths, strict=True))
        )
        + " |"
    ]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        out.append(
            "| "
            + " | ".join(
                v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(row, widths, strict=True))
            )
            + " |"
        )
    return "\n".join(out)


def write_doc(text: str) -> None:
    doc = PERF_DOC.read_text(encoding="utf-8") if PERF_DOC.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in doc or END not in doc:
        doc = doc.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    PERF_DOC.write_text(f"{head}{BEGIN}\n{text.rstrip()}\n{END}{tail}", encoding="utf-8")


def run_drains(
    args: argparse.Namespace,
    url: str,
    fake: subprocess.Popen[str],
    workdir: Path,
    certs: dict[str, str],
    sides: list[Side],
) -> list[dict[str, Any]]:
    """Build one stored backlog, then drain a copy of it per variant and side (interleaved)."""
    n = args.drain_events
    backlog = workdir / "backlog"
    print(f"building a {n:,}-event backlog ...", file=sys.stderr, flush=True)
    print(f"built in {drain.build(backlog, n, 'bench_tcp'):.0f} s", file=sys.stderr, flush=True)
    yearly = "0 0 1 1 *"
    base = {
        "pull_at_startup": False,
        "scheduler": {"audit": yearly, "detections": yearly, "entity_scoring": yearly},
    }
    variants: list[tuple[str, dict[str, Any], list[Side]]] = [("defaults (batch_size 500)", {}, sides)]
    if args.drain_batch:
        variants.append(
            (f"drain_batch_size {args.drain_batch}", {"drain_batch_size": args.drain_batch}, sides[-1:])
        )
    out: list[dict[str, Any]] = []
    for rep in range(args.repeat):
        for tag, extra, on in variants:
            for side in on if rep % 2 == 0 else list(reversed(on)):
                run_dir_data = workdir / "drain-data"
                shutil.copytree(backlog, run_dir_data)
                print(f"drain {tag} on {side.name} ...", file=sys.stderr, flush=True)
                try:
                    r = run_variant("tcp", url, fake, workdir, certs, 0.0, side=side, expected=n, tag=tag,
                                    extra={**base, **extra, "data_dir": str(run_dir_data)})  # fmt: skip
                finally:
                    shutil.rmtree(run_dir_data, ignore_errors=True)
                print(json.dumps(r), file=sys.stderr, flush=True)
                out.append(r)
    return out


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every `finally` stops the processes it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="queue bench at 1,000,000 queued events (+3 min)")
    ap.add_argument(
        "--protocols",
        default="tcp,tcp+drain5000,tcp@2000,relp,udp@2000,tls@2000",
        help="variants PROTO[@BATCH_SIZE][+drainDRAIN_BATCH_SIZE]; batch_size defaults to 500 (the config default)",
    )
    ap.add_argument("--idle-seconds", type=float, default=60.0)
    ap.add_argument("--no-write", action="store_true", help="do not rewrite docs/performance.md")
    ap.add_argument("--profile", default=None, help="record py-spy collapsed stacks to PREFIX.<protocol>.txt")
    ap.add_argument(
        "--page-size", type=int, default=None, help="config page_size (default: the config default)"
    )
    ap.add_argument("--queue-sizes", default=None, help="override the queue bench backlogs, e.g. 10000,50000")
    ap.add_argument(
        "--ab", default="main", help="git ref run as the A side of every figure (default main; '' = no A/B)"
    )
    ap.add_argument(
        "--side",
        action="append",
        default=[],
        help="another B side: NAME:VAR=VALUE[,VAR=VALUE] (this tree with those env variables), repeatable",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per variant and side, interleaved")
    ap.add_argument(
        "--drain-events",
        type=int,
        default=1_000_000,
        help="stored backlog drained to one TCP server (0: skip)",
    )
    ap.add_argument(
        "--drain-batch", type=int, default=5000, help="drain_batch_size of the drain variant (0: none)"
    )
    args = ap.parse_args(argv)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="siemconn-bench-"))
    runs: list[dict[str, Any]] = []
    drains: list[dict[str, Any]] = []
    sides = [Side("branch")]
    for spec in args.side:
        name, _, env_text = spec.partition(":")
        pairs = tuple((k, v) for k, _, v in (kv.partition("=") for kv in env_text.split(",") if kv))
        sides.append(Side(name, None, pairs))
    if args.ab:
        sides.insert(0, extract(args.ab, workdir))
    try:
        certs = make_certs(workdir)
        fake, url, fake_start_s = start_fake(workdir)
        try:
            state = fake_state(url)
            print(f"fake RUX ready in {fake_start_s:.1f} s: {state['heads']}", file=sys.stderr, flush=True)
            for rep in range(args.repeat):
                for proto in args.protocols.split(","):
                    idle = args.idle_seconds if proto == "tcp" and rep == 0 else 0.0  # the default-config run
                    for side in sides if rep % 2 == 0 else list(reversed(sides)):
                        if "+drain" in proto and side.src is not None:
                            continue  # another ref's code may not know drain_batch_size
                        print(f"running {proto} on {side.name} ...", file=sys.stderr, flush=True)
                        r = run_variant(
                            proto, url, fake, workdir, certs, idle, args.profile, args.page_size, side
                        )
                        print(json.dumps(r), file=sys.stderr, flush=True)
                        runs.append(r)
            if args.drain_events:
                drains = run_drains(args, url, fake, workdir, certs, sides)
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
    names = [s.name for s in sides]
    tab = table(runs, drains, names, qb, fl)
    argv_text = " ".join(argv if argv is not None else sys.argv[1:])
    cmd = "make bench" + (f"  (python bench/run.py {argv_text})" if argv_text else "  (python bench/run.py)")
    ab = f"; A/B: `{sides[0].name}` is that ref's src/ run in the same session" if args.ab else ""
    block = "\n".join(
        [
            f"Measured {dt.date.today().isoformat()} with `{cmd}` in {elapsed:.0f} s on: {meta['cpu']}, "
            f"{meta['cores']} cores, {meta['ram_gb']} GB RAM, Python {meta['python']}, "
            f"Linux {meta['kernel']}{ab}; {args.repeat} run(s) per side, ranges shown.",
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
