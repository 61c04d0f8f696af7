"""siemconn.service and siemconn@acme.service under systemd (PID 1 in a podman container).

They are installed by running the shell blocks of packaging/systemd/README.md themselves, with only
the placeholders filled in (the tenant URL, the client id and secret, and the checkout replaced by
the wheel of the README's wheel variant, built on the host), so the README and the units are tested
together. Each unit gets its own container (the README: never both on one host),
on the host's network, against the fake tenant and rsyslog over TLS on the host's 127.0.0.1.

Reload: `systemctl reload siemconn@acme` (the units' ExecReload sends SIGHUP) applies an edited
config.json in the same main process: a server added by the edit receives new events.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.e2e import CLIENT_ID, REPO, SECRET, expected_payloads, received, summary, wait_until
from support.podman import Podman, fact, unique
from support.rsyslog import RsyslogReceiver

from siemconn.devtools.fake_rux import FakeRux, Fault

SYSTEMD_README = REPO / "packaging" / "systemd" / "README.md"
BATCH = 500


def readme_blocks() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", SYSTEMD_README.read_text(), re.S)
    assert len(blocks) >= 2, "packaging/systemd/README.md lost its install blocks"
    return blocks


def fill(script: str, replacements: dict[str, str]) -> str:
    """Fill the README's placeholders; each must be there (else the README changed: update the test)."""
    for old, new in replacements.items():
        assert old in script, f"packaging/systemd/README.md no longer contains {old!r}"
        script = script.replace(old, new)
    return script


def step(block: str, number: int) -> str:
    """Lines of the install block from `# N.` to the next numbered comment."""
    m = re.search(rf"^# {number}\..*?$(.*?)(?=^# \d+\.|\Z)", block, re.S | re.M)
    assert m, f"the README's install block has no step {number}"
    return m.group(1)


@dataclass
class Host:
    """A systemd container with the README's files and units installed."""

    podman: Podman
    name: str
    fake: FakeRux
    rsyslog: RsyslogReceiver
    install_dir: Path  # mounted at /root/install: config.json, the units, server1.pem, the wheel
    log: list[str] = field(default_factory=list)

    def sh(self, script: str, check: bool = True, timeout: float = 300) -> str:
        r = self.podman.run(
            "exec", "-w", "/root/install", self.name, "sh", "-xc", script, check=False, timeout=timeout
        )
        out = r.stdout + r.stderr
        self.log.append(out)
        if check and r.returncode != 0:
            raise AssertionError(f"in {self.name}: {script[:300]!r} failed ({r.returncode}):\n{out[-4000:]}")
        return r.stdout

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.sh(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
        return dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)

    def journal(self, unit: str) -> str:
        return self.sh(f"journalctl -u {unit} --no-pager -o cat", check=False)

    def wait_active(self, unit: str, timeout: float = 60) -> dict[str, str]:
        props = ("ActiveState", "SubState", "MainPID", "NRestarts")
        wait_until(
            lambda: self.show(unit, *props)["SubState"] == "running", timeout, f"{unit} running", interval=0.5
        )
        return self.show(unit, *props)

    def wait_delivered(self, timeout: float = 60) -> dict[str, int]:
        expected = expected_payloads(self.fake)

        def done() -> bool:
            return set(expected) <= set(received(self.rsyslog.raw_lines())[0])

        try:
            wait_until(done, timeout, "every event at rsyslog", interval=0.25)
        except AssertionError:
            counts = received(self.rsyslog.raw_lines())[0]
            raise AssertionError(
                f"{summary(expected, counts)}\n{self.journal('siemconn*')[-3000:]}"
            ) from None
        counts, events = received(self.rsyslog.raw_lines())
        assert all(events[k] == v for k, v in expected.items()), "an event arrived changed"
        return summary(expected, counts)


def config_json(rsyslog: RsyslogReceiver, **extra: Any) -> str:
    """A config.json as the systemd README suggests: certificates and logs under /etc and /var/log."""
    server = {
        "name": "server1",
        "server_protocol": "TLS",
        "server_host": "127.0.0.1",
        "server_port": rsyslog.tls_anon_port,
    }
    cfg = {
        "server": [server],
        "scheduler": dict.fromkeys(("audit", "detections", "entity_scoring"), "*/2 * * * * *"),
        "retry_count": -1,
        "batch_size": BATCH,
        "max_backoff_seconds": 2,
        "cert_dir": "/etc/siemconn/cert",
        "log_format": "json",
        **extra,
    }
    return json.dumps({"configuration": cfg}, indent=2)


def boot(
    podman: Podman,
    image: str,
    wheel: Path,
    pip_cache: Path,
    work: Path,
    fake: FakeRux,
    rsyslog: RsyslogReceiver,
    cleanup: list[str],
) -> Host:
    install = work / "install"
    install.mkdir()
    for unit in ("siemconn.service", "siemconn@.service"):
        (install / unit).write_text((REPO / "packaging" / "systemd" / unit).read_text())
    (install / "server1.pem").write_bytes(rsyslog.certs.ca.read_bytes())
    (install / wheel.name).write_bytes(wheel.read_bytes())
    (install / "requirements.lock").write_text((REPO / "requirements.lock").read_text())
    (install / "config.json").write_text(config_json(rsyslog))
    name = unique("siemconn-systemd")
    cleanup.append(f"c:{name}")
    podman.run(
        "run",
        "-d",
        "--name",
        name,
        "--systemd=always",
        "--network",
        "host",
        "-v",
        f"{install}:/root/install:ro",
        "-v",
        f"{pip_cache}:/root/.cache/pip",
        image,
        "/sbin/init",
    )
    host = Host(podman, name, fake, rsyslog, install)
    # right after `podman run` systemd may not answer yet: ask until it says it has booted
    wait_until(
        lambda: host.sh("systemctl is-system-running --wait", check=False).strip() in ("running", "degraded"),
        60,
        "systemd to boot",
        interval=0.5,
    )
    return host


def readme_install(host: Host, wheel: Path) -> tuple[str, str, str]:
    """Steps 1, 2 and 3 of the README's install block, with the placeholders filled in."""
    block = readme_blocks()[0]
    filled = fill(
        block,
        {
            # the README's documented wheel variant: built once on the host (`pip wheel --no-deps`)
            "/path/to/checkout/requirements.lock": "/root/install/requirements.lock",
            "/opt/siemconn/bin/pip install --no-deps /path/to/checkout": f"/opt/siemconn/bin/pip install --no-deps /root/install/{wheel.name}",
            "https://TENANT.REGION.portal.vectra.ai": host.fake.url,
            "CLIENT_ID=...": f"CLIENT_ID={CLIENT_ID}",
            "'THE-SECRET'": shlex.quote(SECRET),
            "journalctl -u siemconn -f": "journalctl -u siemconn --no-pager -n 20",
            "systemctl status siemconn;": "systemctl status siemconn --no-pager;",
        },
    )
    return step(filled, 1), step(filled, 2), step(filled, 3)


CERT_STEP = "install -d -m 0755 /etc/siemconn/cert && install -m 0644 server1.pem /etc/siemconn/cert/\n"


@pytest.fixture(scope="module")
def single(
    podman: Podman,
    systemd_base: str,
    wheel: Path,
    pip_cache: Path,
    tmp_path_factory: pytest.TempPathFactory,
    cleanup: list[str],
) -> Iterator[Host]:
    """siemconn.service, installed and started by the README's block."""
    rsyslog = RsyslogReceiver(tmp_path_factory.mktemp("rsyslog"))
    rsyslog.start()
    fake = FakeRux(
        seed_audit=300, seed_detections=300, seed_entity=300, client_id=CLIENT_ID, client_secret=SECRET
    ).start()
    host = boot(podman, systemd_base, wheel, pip_cache, tmp_path_factory.mktemp("sd"), fake, rsyslog, cleanup)
    venv, files, unit = readme_install(host, wheel)
    started = time.monotonic()
    host.sh(venv)
    fact(f"systemd: the README's venv + pip install took {time.monotonic() - started:.0f} s")
    started = time.monotonic()
    host.sh(files + CERT_STEP + unit)  # `systemctl enable --now` returns once READY=1 arrived (Type=notify)
    fact(f"systemd: siemconn.service active {time.monotonic() - started:.1f} s after the README's steps 2-3")
    yield host
    fake.stop()
    rsyslog.stop()


def test_active_through_type_notify_and_delivers_everything(single: Host) -> None:
    p = single.show("siemconn", "Type", "NotifyAccess", "ActiveState", "SubState", "StatusText", "Result")
    assert p["Type"] == "notify" and p["NotifyAccess"] == "main", p
    assert (p["ActiveState"], p["SubState"]) == ("active", "running"), p
    s = single.wait_delivered()
    assert s["received"] == s["expected"] > 800 and s["duplicated"] == s["missing"] == 0, s
    assert {f.proto for f in single.rsyslog.fields_lines()} == {"tlsanon"}


def test_watchdog_pings(single: Host) -> None:
    p = single.show("siemconn", "WatchdogUSec", "WatchdogTimestampMonotonic")
    assert p["WatchdogUSec"] == "1min", p
    first = int(p["WatchdogTimestampMonotonic"])
    wait_until(
        lambda: (
            int(single.show("siemconn", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]) > first
        ),
        30,
        "a second WATCHDOG=1",
        interval=1,
    )


def test_dynamic_user_and_the_secret_only_through_load_credential(single: Host) -> None:
    pid = single.show("siemconn", "MainPID")["MainPID"]
    status = single.sh(f"cat /proc/{pid}/status")
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M)
    assert uid and int(uid.group(1)) not in (0, 10001) and int(uid.group(1)) >= 61184, status  # DynamicUser
    env_file = single.sh("cat /etc/siemconn/env")
    assert SECRET not in env_file and "CLIENT_SECRET" not in env_file
    environ = single.sh(f"tr '\\0' '\\n' < /proc/{pid}/environ").splitlines()
    assert "CLIENT_SECRET_FILE=/run/credentials/siemconn.service/client_secret" in environ, environ
    assert not any(SECRET in v or v.startswith("CLIENT_SECRET=") for v in environ), (
        "secret in the environment"
    )
    assert SECRET not in single.sh("systemctl show siemconn")
    assert SECRET not in single.journal("siemconn")
    assert single.sh("stat -c '%a %U' /etc/siemconn/client_secret").split() == ["600", "root"]


def test_restarted_after_sigkill_and_nothing_lost(single: Host) -> None:
    before = single.show("siemconn", "MainPID", "NRestarts")
    mark = single.rsyslog.mark()
    single.fake.add_fault(Fault(path="detections", status=None, delay=0.4, count=40))
    single.fake.append("detections", 15_000)
    wait_until(lambda: single.rsyslog.mark() > mark + 1_500, 60, "the stream under way", interval=0.05)
    single.sh("systemctl kill -s SIGKILL siemconn")
    cut = single.rsyslog.mark() - mark
    after = single.wait_active("siemconn", timeout=60)  # RestartSec=10s
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, (before, after)
    assert after["MainPID"] != before["MainPID"]
    s = single.wait_delivered(timeout=120)
    single.fake.clear_faults()
    assert cut < 15_000, "the stream had ended before the kill; nothing was tested mid-stream"
    assert s["missing"] == 0 and s["unexpected"] == 0 and s["duplicated"] <= BATCH, s
    fact(f"systemd: SIGKILL after {cut} of 15,000 new events; restarted by systemd, 0 lost")


def test_stop_is_clean(single: Host) -> None:
    single.sh("systemctl stop siemconn")
    p = single.show("siemconn", "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    assert p["ActiveState"] == "inactive" and p["Result"] == "success", p
    assert p["ExecMainStatus"] == "0", p


# --- siemconn@acme ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tenant(
    podman: Podman,
    systemd_base: str,
    wheel: Path,
    pip_cache: Path,
    tmp_path_factory: pytest.TempPathFactory,
    cleanup: list[str],
) -> Iterator[tuple[Host, str]]:
    """A second host: the README's venv step, then its per-tenant block; (host, that block's script)."""
    rsyslog = RsyslogReceiver(tmp_path_factory.mktemp("rsyslog"))
    rsyslog.start()
    fake = FakeRux(seed_detections=300, client_id=CLIENT_ID, client_secret=SECRET).start()
    host = boot(podman, systemd_base, wheel, pip_cache, tmp_path_factory.mktemp("sd"), fake, rsyslog, cleanup)
    venv, files, _ = readme_install(host, wheel)
    host.sh(venv)
    # "config.json, env, client_secret as above, in this folder"
    files_for_acme = re.sub(r"/etc/siemconn(?=[/\s]|$)", "/etc/siemconn/acme", files, flags=re.M)
    tenant_blocks = [b for b in readme_blocks() if b.startswith("install -d /etc/siemconn/acme")]
    assert len(tenant_blocks) == 1, "the README's per-tenant block changed"
    block = tenant_blocks[0]
    assert "siemconn@acme" in block, "the README's per-tenant block changed"
    first, _, rest = block.partition("\n")
    assert first.startswith("install -d /etc/siemconn/acme"), first
    yield host, "\n".join([first, files_for_acme, CERT_STEP, rest])
    fake.stop()
    rsyslog.stop()


def test_tenant_bad_config_is_not_restarted(tenant: tuple[Host, str]) -> None:
    """RestartPreventExitStatus=2: an invalid config.json stays failed until it is edited."""
    host, script = tenant
    bad = json.loads(config_json(host.rsyslog))
    bad["configuration"]["server"][0]["server_port"] = 70000
    (host.install_dir / "config.json").write_text(json.dumps(bad))
    host.sh(script, check=False)  # `enable --now` fails: the unit never sent READY=1
    p = host.show(
        "siemconn@acme",
        "ActiveState",
        "ExecMainStatus",
        "NRestarts",
        "RestartUSec",
        "RestartPreventExitStatus",
    )
    # exit code 2 is "invalid configuration" (README, Commands and exit codes)
    assert p["ActiveState"] == "failed" and p["ExecMainStatus"] == "2", p
    assert "2" in p["RestartPreventExitStatus"].split(), p
    assert p["RestartUSec"] == "10s", p
    time.sleep(12)  # longer than RestartSec: a restart would have happened by now
    p = host.show("siemconn@acme", "ActiveState", "NRestarts")
    assert p == {"ActiveState": "failed", "NRestarts": "0"}, p
    assert "server_port" in host.journal("siemconn@acme")  # the error names the field


def test_tenant_runs_after_the_config_is_fixed(tenant: tuple[Host, str]) -> None:
    host, _ = tenant
    (host.install_dir / "config.json").write_text(config_json(host.rsyslog))
    host.sh("install -m 0644 config.json /etc/siemconn/acme/config.json && systemctl restart siemconn@acme")
    p = host.wait_active("siemconn@acme")
    assert p["ActiveState"] == "active", p
    s = host.wait_delivered()
    assert s["received"] == s["expected"] > 250 and s["missing"] == s["duplicated"] == 0, s
    pid = p["MainPID"]
    assert host.sh(f"readlink /proc/{pid}/cwd").strip().endswith("/siemconn/acme")
    assert host.sh("ls /var/lib/siemconn/acme/data").split().count("queue.db") == 1
    environ = host.sh(f"tr '\\0' '\\n' < /proc/{pid}/environ").splitlines()
    assert "CLIENT_SECRET_FILE=/run/credentials/siemconn@acme.service/client_secret" in environ
    assert not any(SECRET in v for v in environ)


def test_tenant_reload_applies_a_new_server_in_the_same_process(tenant: tuple[Host, str]) -> None:
    """ExecReload: `systemctl reload` re-reads config.json; same MainPID, and the added server gets events."""
    host, _ = tenant
    p = host.show("siemconn@acme", "ExecReload", "CanReload", "MainPID")
    assert p["CanReload"] == "yes" and "kill -HUP" in p["ExecReload"], p
    before_pid = p["MainPID"]
    cfg = json.loads(config_json(host.rsyslog))
    cfg["configuration"]["server"].append(
        {
            "name": "server2",
            "server_protocol": "TCP",
            "server_host": "127.0.0.1",
            "server_port": host.rsyslog.tcp_port,
        }
    )
    (host.install_dir / "config.json").write_text(json.dumps(cfg))
    host.sh("install -m 0644 config.json /etc/siemconn/acme/config.json && systemctl reload siemconn@acme")
    wait_until(
        lambda: "reload_done" in host.journal("siemconn@acme"),
        60,
        "reload_done in the journal",
        interval=0.5,
    )
    assert host.show("siemconn@acme", "MainPID")["MainPID"] == before_pid
    lines_before = len(host.rsyslog.raw_lines())
    host.fake.append("detections", 20)
    wait_until(
        lambda: len(host.rsyslog.raw_lines()) >= lines_before + 40,  # 20 new events, to both servers
        60,
        "the new events at both servers",
        interval=0.5,
    )
    assert host.show("siemconn@acme", "ActiveState")["ActiveState"] == "active"
