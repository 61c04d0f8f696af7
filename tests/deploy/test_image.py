"""The container image, built from the Dockerfile unchanged and run as the README's `docker run` says.

One deployment for the module, checked in order: the fake tenant and rsyslog (TLS, its CA pinned as
cert/server1.pem, the folder mounted read-only) on the host's 127.0.0.1, and the container on the
host's network: the one difference from the README's command, because test servers listen on
loopback only. The HEALTHCHECK is run as the image declares it (`podman healthcheck run`), so the
test follows the Dockerfile when the command changes.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.e2e import CLIENT_ID, REPO, SECRET, expected_payloads, received, summary, wait_until
from support.podman import BuiltImage, Podman, fact, unique
from support.rsyslog import RsyslogReceiver

from siemconn.devtools.fake_rux import FakeRux, Fault

BATCH = 500  # config batch_size: a kill may cost a resend of at most one batch per server
HEALTH_WINDOW = 4  # health_window_seconds in the test config
LEGACY = re.compile(r"^<14>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ VECTRA-SYSLOG-CONNECTOR: \{")


def compose_grace_seconds() -> int:
    m = re.search(r"^\s+stop_grace_period:\s*(\d+)s\b", (REPO / "docker-compose.yml").read_text(), re.M)
    assert m, "docker-compose.yml has no stop_grace_period"
    return int(m.group(1))


@dataclass
class Deployment:
    """The README's `docker run` against the fake tenant and rsyslog; one container at a time."""

    podman: Podman
    image: BuiltImage
    fake: FakeRux
    rsyslog: RsyslogReceiver
    config: Path
    cert_dir: Path
    data_volume: str
    logs_volume: str
    name: str = ""
    started_at: float = 0.0
    runs: int = 0

    def start(self) -> str:
        """`docker run -d --name ... --restart unless-stopped -e BASE_URL -e CLIENT_ID -e CLIENT_SECRET
        -v config.json:ro -v cert:ro -v siemconn-data:/app/data -v siemconn-logs:/app/logs IMAGE`."""
        self.runs += 1
        self.name = unique(f"siemconn-test-{self.runs}")
        self.started_at = time.monotonic()
        self.podman.run(
            "run",
            "-d",
            "--name",
            self.name,
            "--restart",
            "unless-stopped",
            "--network",
            "host",
            "-e",
            "BASE_URL",
            "-e",
            "CLIENT_ID",
            "-e",
            "CLIENT_SECRET",
            "-v",
            f"{self.config}:/app/config.json:ro",
            "-v",
            f"{self.cert_dir}:/app/cert:ro",
            "-v",
            f"{self.data_volume}:/app/data",
            "-v",
            f"{self.logs_volume}:/app/logs",
            self.image.tag,
            env={"BASE_URL": self.fake.url, "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": SECRET},
        )
        return self.name

    def inspect(self) -> dict[str, Any]:
        return dict(self.podman.json("container", "inspect", self.name)[0])

    def logs(self) -> str:
        r = self.podman.run("logs", self.name, check=False)
        return r.stdout + r.stderr

    def healthcheck(self) -> tuple[int, str]:
        """The image's HEALTHCHECK command, run once in the container: (exit code, output)."""
        r = self.podman.run("healthcheck", "run", self.name, check=False, timeout=60)
        return r.returncode, (r.stdout + r.stderr).strip()

    def wait_delivered(self, timeout: float = 60.0) -> dict[str, int]:
        """Wait until every event the fake tenant holds has arrived; return the summary."""
        expected = expected_payloads(self.fake)

        def done() -> bool:
            counts, _ = received(self.rsyslog.raw_lines())
            return set(expected) <= set(counts)

        try:
            wait_until(done, timeout, "every event at rsyslog", interval=0.25)
        except AssertionError:
            counts, _ = received(self.rsyslog.raw_lines())
            raise AssertionError(f"{summary(expected, counts)}\n{self.logs()[-3000:]}") from None
        counts, events = received(self.rsyslog.raw_lines())
        for key, ev in expected.items():
            assert events[key] == ev, f"event {key} arrived changed"
        return summary(expected, counts)


@pytest.fixture(scope="module")
def deployment(
    podman: Podman,
    image: BuiltImage,
    tmp_path_factory: pytest.TempPathFactory,
    cleanup: list[str],
) -> Iterator[Deployment]:
    rsyslog = RsyslogReceiver(tmp_path_factory.mktemp("rsyslog"))
    rsyslog.start()
    fake = FakeRux(
        seed_audit=400, seed_detections=400, seed_entity=400, client_id=CLIENT_ID, client_secret=SECRET
    ).start()
    work = tmp_path_factory.mktemp("image")
    work.chmod(0o755)
    cert_dir = work / "cert"
    cert_dir.mkdir(mode=0o755)
    (cert_dir / "server1.pem").write_bytes(rsyslog.certs.ca.read_bytes())  # the cert/NAME.pem convention
    (cert_dir / "server1.pem").chmod(0o644)
    config = work / "config.json"
    server = {
        "name": "server1",
        "server_protocol": "TLS",
        "server_host": "127.0.0.1",
        "server_port": rsyslog.tls_anon_port,
    }
    config.write_text(
        json.dumps(
            {
                "configuration": {
                    "server": [server],
                    "scheduler": dict.fromkeys(("audit", "detections", "entity_scoring"), "*/2 * * * * *"),
                    "retry_count": -1,
                    "batch_size": BATCH,
                    "max_backoff_seconds": 2,
                    "health_window_seconds": HEALTH_WINDOW,
                    "log_format": "json",
                }
            },
            indent=2,
        )
    )
    config.chmod(0o644)
    data, logs = unique("siemconn-data"), unique("siemconn-logs")
    cleanup.extend([f"v:{data}", f"v:{logs}"])
    d = Deployment(podman, image, fake, rsyslog, config, cert_dir, data, logs)
    yield d
    if d.name:
        podman.run("rm", "-f", "-v", "-t", "0", d.name, check=False)
    fake.stop()
    rsyslog.stop()


def test_every_event_arrives_exactly(deployment: Deployment, cleanup: list[str]) -> None:
    d = deployment
    cleanup.append(f"c:{d.start()}")
    wait_until(lambda: d.rsyslog.mark() > 0, 60, "the first event at rsyslog", interval=0.05)
    first = time.monotonic() - d.started_at
    s = d.wait_delivered()
    assert s["expected"] > 1000 and s["received"] == s["expected"], s  # each one once: a fresh volume
    assert s["missing"] == s["duplicated"] == s["unexpected"] == 0, s
    lines = d.rsyslog.raw_lines()
    assert all(LEGACY.match(line) for line in lines), next(x for x in lines if not LEGACY.match(x))
    assert {f.proto for f in d.rsyslog.fields_lines()} == {"tlsanon"}  # over TLS, CA from cert/server1.pem
    status = (d.podman.run("exec", d.name, "cat", "/proc/1/status").stdout).splitlines()
    mem = {k: v.split()[0] for k, _, v in (ln.partition(":\t") for ln in status) if k in ("VmRSS", "VmHWM")}
    fact(
        f"image run: first event at rsyslog {first:.1f} s after `podman run`; {s['expected']:,} events over TLS; "
        f"memory after them: RSS {int(mem['VmRSS']) / 1024:.0f} MB, peak {int(mem['VmHWM']) / 1024:.0f} MB"
    )
    # the start line names the encoder: the build stage compiles the C one where it can install a compiler
    line = next((ln for ln in d.logs().splitlines() if "siemconn_started" in ln), "")
    encoder = re.search(r"\"encoder\": \"([^\"]*)\"|encoder='?([a-z +]+)", line)
    assert encoder is not None, d.logs()[-2000:]
    fact(f"image's event encoder: {encoder.group(1) or encoder.group(2)}")


def test_runs_as_uid_10001_with_its_files_private(deployment: Deployment) -> None:
    d = deployment
    status = d.podman.run("exec", d.name, "cat", "/proc/1/status").stdout
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
    gids = re.search(r"^Gid:\s+(.*)$", status, re.M)
    assert uids and gids
    assert set(uids.group(1).split()) == {"10001"}, status
    assert set(gids.group(1).split()) == {"10001"}, status
    cmdline = d.podman.run("exec", d.name, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert cmdline[1:3] == ["-m", "siemconn"], cmdline
    owner = d.podman.run("exec", d.name, "stat", "-c", "%u %a", "/app/data/queue.db").stdout.split()
    assert owner[0] == "10001" and owner[1].endswith("00"), owner  # readable by nobody else


def test_healthcheck_turns_unhealthy_past_the_window_and_healthy_after(deployment: Deployment) -> None:
    d = deployment
    declared = d.inspect()["Config"].get("Healthcheck") or {}
    assert declared.get("Test"), "the image lost its HEALTHCHECK (OCI format? build with --format docker)"
    wait_until(lambda: d.healthcheck()[0] == 0, 60, "a healthy healthcheck")
    d.rsyslog.stop()
    d.fake.append("detections", 50)  # a backlog, so the writer keeps trying the stopped server
    wait_until(lambda: d.healthcheck()[0] == 1, 90, "the healthcheck to fail while rsyslog is down")
    # the reason, from the same command as the image declares it
    test = declared["Test"]
    cmd = test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]
    r = d.podman.run("exec", d.name, *cmd, check=False)
    assert r.returncode == 1 and "server1" in r.stdout and "unreachable" in r.stdout, r.stdout
    d.rsyslog.start()
    wait_until(lambda: d.healthcheck()[0] == 0, 90, "a healthy healthcheck after rsyslog is back")
    s = d.wait_delivered()
    assert s["missing"] == 0 and s["unexpected"] == 0 and s["duplicated"] <= BATCH, s


def test_rm_f_mid_stream_then_a_new_container_on_the_same_volume_loses_nothing(
    deployment: Deployment, cleanup: list[str]
) -> None:
    d = deployment
    before = d.rsyslog.mark()
    # 20 slow pages, so that the kill lands while events are flowing
    d.fake.add_fault(Fault(path="detections", status=None, delay=0.4, count=40))
    d.fake.append("detections", 20_000)
    wait_until(lambda: d.rsyslog.mark() > before + 2_000, 60, "the stream to be under way", interval=0.05)
    d.podman.run("rm", "-f", "-t", "0", d.name)
    cut = d.rsyslog.mark() - before
    cleanup.append(f"c:{d.start()}")
    s = d.wait_delivered(timeout=120)
    d.fake.clear_faults()
    assert cut < 20_000, "the stream had ended before the kill; nothing was tested mid-stream"
    assert s["missing"] == 0 and s["unexpected"] == 0, s
    assert s["duplicated"] <= 2 * BATCH, s  # at most a batch per kill (this one and the outage's)
    fact(
        f"image: `podman rm -f` after {cut} of 20,000 new events; the next container delivered the rest, 0 lost"
    )


def test_sigterm_stops_within_the_compose_grace_period(deployment: Deployment) -> None:
    d = deployment
    grace = compose_grace_seconds()
    wait_until(lambda: d.healthcheck()[0] == 0, 60, "a healthy container")
    started = time.monotonic()
    d.podman.run("stop", "-t", str(grace), d.name, timeout=grace + 30)
    took = time.monotonic() - started
    state = d.inspect()["State"]
    # podman sends STOPSIGNAL (SIGTERM), then SIGKILL after the grace period: exit 0 means no SIGKILL
    assert state["ExitCode"] == 0, (state, d.logs()[-2000:])
    records = [json.loads(x) for x in d.logs().splitlines() if x.startswith("{")]
    stopped = [r for r in records if "stopped" in str(r.get("event")) and r.get("exit_code") == 0]
    assert stopped, d.logs()[-2000:]  # it logged its own clean stop
    fact(f"image: SIGTERM stop took {took:.1f} s (compose grace period {grace} s)")


def test_image_layers(image: BuiltImage) -> None:
    """The image's own layers (the venv and the user) stay small; the figure goes to the summary."""
    assert 0 < image.own_bytes < 40 * 1024 * 1024, image.own_bytes


def test_runs_as_the_kubernetes_manifest_runs_it(deployment: Deployment, cleanup: list[str]) -> None:
    """packaging/kubernetes/statefulset.yaml's container settings, applied with podman: read-only root,
    no capabilities, no privilege escalation, the secret as a file (group-readable as with fsGroup)."""
    d = deployment
    sts = yaml.safe_load((REPO / "packaging" / "kubernetes" / "statefulset.yaml").read_text())
    pod = sts["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sc, psc = c["securityContext"], pod["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
    secret_file = Path(next(e["value"] for e in c["env"] if e["name"] == "CLIENT_SECRET_FILE"))
    secrets = Path(tempfile.mkdtemp(dir=d.config.parent))
    secrets.chmod(0o755)
    (secrets / secret_file.name).write_text(SECRET)
    os.chown(secrets / secret_file.name, 0, psc["fsGroup"])
    (secrets / secret_file.name).chmod(0o440)
    data = unique("siemconn-k8s-data")
    name = unique("siemconn-k8s")
    cleanup.extend([f"v:{data}", f"c:{name}"])
    mark = d.rsyslog.mark()
    d.podman.run(
        "run", "-d", "--name", name, "--network", "host",
        "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--user", f"{psc['runAsUser']}:{psc['runAsGroup']}", "--group-add", str(psc["fsGroup"]),
        "--tmpfs", "/tmp",
        "-e", "BASE_URL", "-e", "CLIENT_ID", "-e", f"CLIENT_SECRET_FILE={secret_file}",
        "-v", f"{d.config}:/app/config.json:ro", "-v", f"{d.cert_dir}:/app/cert:ro",
        "-v", f"{secrets}:{secret_file.parent}:ro", "-v", f"{data}:/app/data", "-v", f"{d.logs_volume}:/app/logs",
        d.image.tag, *c["args"],
        env={"BASE_URL": d.fake.url, "CLIENT_ID": CLIENT_ID},
    )  # fmt: skip
    expected = expected_payloads(d.fake)  # a new claim starts from initial_lookback_hours: all again

    def all_again() -> bool:
        return set(expected) <= set(received(d.rsyslog.raw_lines()[mark:])[0])

    try:
        wait_until(all_again, 90, "every event from the read-only container", interval=0.25)
    except AssertionError:
        raise AssertionError(d.podman.run("logs", name, check=False).stderr[-3000:]) from None
    s = summary(expected, received(d.rsyslog.raw_lines()[mark:])[0])
    assert s["missing"] == s["duplicated"] == s["unexpected"] == 0, s
    for probe in ("livenessProbe", "readinessProbe"):
        cmd = c[probe]["exec"]["command"]

        def probe_ok(cmd: list[str] = cmd) -> bool:
            return d.podman.run("exec", name, *cmd, check=False).returncode == 0

        wait_until(probe_ok, 30, f"{probe} ok")
    assert d.podman.run("exec", name, "touch", "/app/x", check=False).returncode != 0  # read-only root
