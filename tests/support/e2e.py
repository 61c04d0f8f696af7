"""End-to-end harness: siemconn as a real subprocess, the fake RUX tenant over HTTP, real receivers.

fake = FakeRux(seed_detections=200, client_id=CLIENT_ID, client_secret=SECRET).start()
conn = Connector(tmp_path, fake.url, servers=[rsyslog.server_entry("tcp1", "TCP")])
conn.start(); conn.wait_log("siemconn_started"); ...; conn.terminate()
expected = expected_payloads(fake)            # {(stream, id): event dict} as the API returns it
got = received_payloads(rsyslog.raw_lines())  # Counter of (stream, id), and the parsed events
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from siemconn.devtools.fake_rux import FakeRux
from siemconn.devtools.harness import config_skeleton, wait_until

__all__ = [
    "CLIENT_ID",
    "Connector",
    "REPO",
    "SECRET",
    "connector_config",
    "expected_keys",
    "expected_payloads",
    "payload_of",
    "received",
    "received_counts",
    "serve_fake",
    "start_fake",
    "stream_of",
    "summary",
    "wait_until",
]

CLIENT_ID = "e2e-client"
SECRET = "e2e-Secret-Value-Never-Logged-42"
REPO = Path(__file__).resolve().parents[2]


def stream_of(event: dict[str, Any]) -> str:
    """Which stream an event belongs to, from its fields (legacy lines do not carry the stream)."""
    if "detection_id" in event:
        return "detections"
    if "urgency_score" in event:
        return "entity_scoring"
    return "audit"


def expected_keys(fake: FakeRux) -> set[tuple[str, int]]:
    """(stream, id) of every event a client with default filters sees: what expected_payloads keys, without
    the bodies (a lean tenant's million events)."""
    keys: set[tuple[str, int]] = set()
    for stream, et in (
        ("audits", None),
        ("detections", None),
        ("entity_scoring", "account"),
        ("entity_scoring", "host"),
    ):
        name = "audit" if stream == "audits" else stream
        keys.update((name, i) for i in fake.ids(stream, et))
    return keys


def received_counts(lines: Iterable[str]) -> Counter[tuple[str, int]]:
    """How often each (stream, id) arrived: received()'s counts without keeping the events."""
    counts: Counter[tuple[str, int]] = Counter()
    for line in lines:
        if "{" in line:
            ev = payload_of(line)
            if "id" in ev:
                counts[(stream_of(ev), ev["id"])] += 1
    return counts


def expected_payloads(
    fake: FakeRux, version: str = "v3.3", size: str = "regular"
) -> dict[tuple[str, int], dict[str, Any]]:
    """Every event a client with default filters sees, keyed (stream, id), as the API serves it
    (`size`: v3.5 detections' size; v3.5 serves detections only, the other streams come from v3.4)."""
    visible: set[tuple[str, int]] = set()
    for stream, et in (
        ("audits", None),
        ("detections", None),
        ("entity_scoring", "account"),
        ("entity_scoring", "host"),
    ):
        visible.update((stream, i) for i in fake.ids(stream, et))
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for stream, events in fake.generated().items():
        name = "audit" if stream == "audits" else stream
        for ev in events:
            if (stream, ev.id) in visible:
                v = "v3.4" if version == "v3.5" and stream != "detections" else version
                out[(name, ev.id)] = json.loads(ev.body(v, size))
    return out


def start_fake(**knobs: Any) -> FakeRux:
    """A started FakeRux that accepts CLIENT_ID and SECRET (keyword arguments go to FakeRux)."""
    return FakeRux(client_id=CLIENT_ID, client_secret=SECRET, **knobs).start()


def serve_fake(**knobs: Any) -> Iterator[FakeRux]:
    """The body of a module's `fake` fixture: start_fake(**knobs), stopped after the test."""
    fake = start_fake(**knobs)
    yield fake
    fake.stop()


def payload_of(line: str) -> dict[str, Any]:
    """The JSON payload of one received syslog line (any of our formats)."""
    payload: dict[str, Any] = json.loads(line[line.index("{") :])
    return payload


def received(lines: Iterable[str]) -> tuple[Counter[tuple[str, int]], dict[tuple[str, int], dict[str, Any]]]:
    counts: Counter[tuple[str, int]] = Counter()
    events: dict[tuple[str, int], dict[str, Any]] = {}
    for line in lines:
        if "{" not in line:
            continue
        ev = payload_of(line)
        if "id" not in ev:
            continue
        key = (stream_of(ev), ev["id"])
        counts[key] += 1
        events[key] = ev
    return counts, events


def summary(expected: Iterable[tuple[str, int]], counts: Counter[tuple[str, int]]) -> dict[str, int]:
    exp = set(expected)
    return {
        "expected": len(exp),
        "received": sum(counts.values()),
        "missing": len(exp - set(counts)),
        "duplicated": sum(n - 1 for k, n in counts.items() if n > 1),
        "unexpected": len(set(counts) - exp),
    }


def connector_config(
    workdir: Path,
    servers: list[dict[str, Any]],
    *,
    retry_count: int = -1,
    schedule: str = "*/2 * * * * *",
    **extra: Any,
) -> dict[str, Any]:
    """The e2e skeleton: JSON logs, no free-disk floor (tmp file systems may be small)."""
    return config_skeleton(
        workdir, servers, schedule=schedule, retry_count=retry_count, **({"min_free_disk_mb": 0} | extra)
    )


class Connector:
    """`python -m siemconn run` as a subprocess with its own workdir, config and captured output."""

    def __init__(self, workdir: Path, base_url: str, servers: list[dict[str, Any]], **config: Any) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "config.json"
        self.config = connector_config(workdir, servers, **config)
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("CLIENT_SECRET", "CLIENT_SECRET_FILE")},
            "BASE_URL": base_url,
            "CLIENT_ID": CLIENT_ID,
            "CLIENT_SECRET": SECRET,
            "PYTHONUNBUFFERED": "1",
            # the runtime record (how `status` finds a running service) stays in the test's directory
            "SIEMCONN_RUNTIME_DIR": str(workdir / "run"),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.exit_codes: list[int] = []

    @property
    def out_path(self) -> Path:
        return self.workdir / f"stdout.{self.runs}.log"

    def start(self, preexec_fn: Callable[[], object] | None = None) -> Connector:
        """Start the service; `preexec_fn` runs in the child before exec (umask, resource limits)."""
        self.runs += 1
        out = open(self.out_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "siemconn", "run", "--config", str(self.config_path)],
            cwd=self.workdir,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
        out.close()
        return self

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("stdout.*.log")))

    def log_records(self) -> list[dict[str, Any]]:
        recs = []
        for line in self.output().splitlines():
            try:
                recs.append(json.loads(line))
            except ValueError:
                continue
        return recs

    def wait_log(self, event: str, timeout: float = 20.0, count: int = 1) -> None:
        wait_until(
            lambda: (
                sum(1 for r in self.log_records() if r.get("event") == event) >= count
                or (self.proc is not None and self.proc.poll() is not None)
            ),
            timeout,
            f"log line {event!r}",
        )
        assert sum(1 for r in self.log_records() if r.get("event") == event) >= count, self.output()[-3000:]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        """The service's process id (after start())."""
        assert self.proc is not None, "start() first"
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        rc = self.proc.wait(timeout=timeout)
        self.exit_codes.append(rc)
        return rc

    def terminate(self, timeout: float = 15.0) -> int:
        if not self.alive():
            assert self.proc is not None
            return self.proc.returncode
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.alive():
            self.signal(signal.SIGKILL)
            self.wait()

    def status(self) -> str:
        return subprocess.run(
            [sys.executable, "-m", "siemconn", "status", "--config", str(self.config_path)],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    def all_logs_text(self) -> str:
        parts = [self.output()]
        for p in (self.workdir / "logs").glob("*"):
            parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)
