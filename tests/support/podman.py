"""podman for the packaging tests: a private configuration, the base images, image builds.

    pm = Podman.create(workdir)            # None (with the reason) when podman cannot run here
    base = pm.python_base(log)             # the Dockerfile's official base if it can be pulled, else a
                                           # local Debian bookworm equivalent (mmdebstrap), cached
    pm.build(tag, context, build_args={...}, mounts=pm.build_mounts())
    pm.run("ps", "-a"); pm.json("inspect", name)

Everything this machine decides is derived when the tests run, never written into the repository:
- containers.conf lives in a private directory and is passed through CONTAINERS_CONF, so the system's
  configuration does not matter: runc with cgroupfs (crun and the systemd cgroup manager do not work on
  every host), and a default `nofile` ulimit equal to this process's hard limit (podman's default can
  exceed it, and then no container starts).
- pip inside a build and inside the systemd container uses the host's index settings and trusts the
  host's CA bundle (an intercepting proxy's CA is often only there): a local base carries both (a
  pip.conf written from `pip config list` with only the settings that make sense inside a container);
  for the official base the host's bundle is mounted over the image's during the build only.
- A local base is a podman image tagged with a hash of everything that goes into it (suite, packages,
  hooks, the CA bundle), so it is built once per machine and reused until one of those changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BASE_REPO",
    "BuiltImage",
    "CA_IN_IMAGE",
    "FACTS",
    "PYTHON_PACKAGES",
    "Podman",
    "REPO",
    "SUITE",
    "SYSTEMD_PACKAGES",
    "default_ulimits",
    "fact",
    "host_ca_bundle",
    "official_base",
    "pip_conf",
    "pip_config",
    "unique",
]

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
PYTHON_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
SYSTEMD_PACKAGES = (*PYTHON_PACKAGES, "systemd", "systemd-sysv")
BASE_REPO = "localhost/siemconn-test-base"
CA_IN_IMAGE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's bundle path, in both kinds of base
# pip settings that are about reaching the index; paths on this machine (find-links, file:// indexes,
# constraints) mean nothing inside a container and are left out
_PIP_NETWORK_KEYS = ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout", "proxy")


FACTS: list[str] = []  # printed at the end of `make test-packaging`: base used, build time, figures


def fact(line: str) -> None:
    """Record a measured figure or a decision for the run's summary."""
    FACTS.append(line)


def unique(prefix: str) -> str:
    """A container or volume name no other run uses."""
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


@dataclass(frozen=True)
class BuiltImage:
    """The image under test and how it was made."""

    tag: str
    base: str
    official: bool
    build_seconds: float
    own_bytes: int


def official_base() -> str:
    """The Dockerfile's default PYTHON_IMAGE."""
    m = re.search(r"^ARG PYTHON_IMAGE=(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert m, "the Dockerfile has no ARG PYTHON_IMAGE=<default>"
    name = m.group(1)
    first = name.split("/")[0]
    if "/" not in name:
        return f"docker.io/library/{name}"  # what Docker means by a short name
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return name


def host_ca_bundle() -> Path | None:
    """The CA bundle this machine's pip and Python trust."""
    candidates = [os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE")]
    pip_cert = pip_config().get("cert")
    candidates.insert(0, pip_cert[0] if pip_cert else None)
    candidates.append(ssl.get_default_verify_paths().cafile)
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


def pip_config() -> dict[str, list[str]]:
    """`pip config list` as {key: values}; environment settings (PIP_*) win over files, as in pip."""
    out: dict[str, list[str]] = {}
    try:
        text = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    ranked: dict[str, tuple[int, str]] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        scope, _, name = key.rpartition(".")
        rank = 2 if scope.startswith(":env:") else 1
        value = value.strip().strip("'\"")
        if name and (name not in ranked or rank >= ranked[name][0]):
            ranked[name] = (rank, value)
    for name, (_, value) in ranked.items():
        out[name] = value.split()
    for env_key, value in os.environ.items():
        if env_key.startswith("PIP_") and env_key != "PIP_CONFIG_FILE":
            out[env_key[4:].lower().replace("_", "-")] = value.split()
    return out


def pip_conf(path: Path) -> Path:
    """Write a pip.conf for use inside a container: the host's network settings, the mounted CA bundle."""
    lines = ["[global]", f"cert = {CA_IN_IMAGE}"]
    for key, values in pip_config().items():
        if key not in _PIP_NETWORK_KEYS:
            continue
        if key.endswith("index-url"):
            values = [v for v in values if v.startswith(("http://", "https://"))]
        if values:
            lines.append(f"{key} = {' '.join(values)}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o644)
    return path


def default_ulimits() -> list[str]:
    """Container ulimits no higher than this host allows (podman's defaults can exceed them).

    nofile: this process's hard limit. nproc: also at most 32768, the limit a rootful podman process
    runs with; a container cannot be given more than its podman has, whatever the host allows.
    """
    out = []
    for name, which, cap in (
        ("nofile", resource.RLIMIT_NOFILE, 1048576),
        ("nproc", resource.RLIMIT_NPROC, 32768),
    ):
        hard = resource.getrlimit(which)[1]
        n = cap if hard == resource.RLIM_INFINITY else min(int(hard), cap)
        out.append(f"{name}={n}:{n}")
    return out


@dataclass
class Podman:
    """podman with a private containers.conf; every call is logged to `log` (one line per command)."""

    workdir: Path
    env: dict[str, str]
    log: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, workdir: Path) -> tuple[Podman | None, str]:
        """(Podman, "") or (None, why podman cannot run here)."""
        if shutil.which("podman") is None:
            return None, "podman is not installed (apt-get install podman runc)"
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "containers.conf"
        ulimits = ", ".join(f'"{u}"' for u in default_ulimits())
        runtime = "runc" if shutil.which("runc") else "crun"
        conf.write_text(
            "[containers]\n"
            f"default_ulimits = [{ulimits}]\n"
            "[engine]\n"
            f'runtime = "{runtime}"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
        )
        env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        pm = cls(workdir, env)
        r = pm.run("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=120)
        if r.returncode != 0:
            return None, f"`podman info` failed: {(r.stderr or r.stdout).strip()[-500:]}"
        return pm, ""

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """podman ARGS; `env` adds variables (for `-e NAME` pass-through, as the README's command)."""
        started = time.monotonic()
        r = subprocess.run(
            ["podman", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        self.log.append(
            f"podman {' '.join(args)[:200]} -> {r.returncode} ({time.monotonic() - started:.1f} s)"
        )
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-4000:]}")
        return r

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "exists", ref, check=False).returncode == 0

    def smoke(self, image: str) -> str:
        """'' if a container of `image` runs here, else podman's error."""
        r = self.run(
            "run", "--rm", "--network", "host", "--entrypoint", "true", image, check=False, timeout=120
        )
        return "" if r.returncode == 0 else (r.stderr or r.stdout).strip()[-500:]

    # --- base images ---------------------------------------------------------------------------

    def python_base(self, report: Callable[[str], None]) -> tuple[str, bool]:
        """(image, official?): the Dockerfile's base when it can be pulled, else the local equivalent."""
        official = official_base()
        if self.image_exists(official):
            report(f"base image: official {official} (already present)")
            return official, True
        r = self.run("pull", "--quiet", official, check=False, timeout=300)
        if r.returncode == 0:
            report(f"base image: official {official} (pulled)")
            return official, True
        why = (r.stderr.strip().splitlines() or ["no output"])[-1][:200]
        image = self.local_base("python", PYTHON_PACKAGES, report)
        report(f"base image: LOCAL {image}, a Debian {SUITE} equivalent; {official} cannot be pulled: {why}")
        return image, False

    def local_base(self, kind: str, packages: Sequence[str], report: Callable[[str], None]) -> str:
        """A Debian base from mmdebstrap with `packages`, the host CA bundle and python/pip links."""
        ca = host_ca_bundle()
        conf = pip_conf(self.workdir / "pip.conf")
        hooks = [
            'ln -sf python3 "$1/usr/bin/python"',
            '[ -e "$1/usr/bin/pip" ] || ln -s pip3 "$1/usr/bin/pip"',
        ]
        key = hashlib.sha256(
            json.dumps([SUITE, "minbase", list(packages), hooks, CA_IN_IMAGE]).encode()
            + conf.read_bytes()
            + (ca.read_bytes() if ca else b"")
        ).hexdigest()[:16]
        image = f"{BASE_REPO}:{kind}-{key}"
        if self.image_exists(image):
            report(f"local base {image}: cached")
            return image
        if shutil.which("mmdebstrap") is None:
            raise AssertionError("mmdebstrap is not installed (apt-get install mmdebstrap)")
        tar = self.workdir / f"base-{kind}.tar"
        cmd = [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            *(f"--customize-hook={h}" for h in hooks),
            f"--customize-hook=upload {conf} /etc/pip.conf",
        ]
        if ca is not None:
            cmd.append(f"--customize-hook=upload {ca} {CA_IN_IMAGE}")
        cmd += [SUITE, str(tar)]
        started = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise AssertionError(f"mmdebstrap failed ({r.returncode}):\n{r.stderr[-4000:]}")
        self.run(
            "import",
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            'CMD ["python3"]',
            str(tar),
            image,
            timeout=600,
        )
        tar.unlink()
        report(f"local base {image}: built in {time.monotonic() - started:.0f} s")
        # an older base of this kind (another CA bundle or package list) is not needed any more
        listed = self.run("images", "--format", "{{.Repository}}:{{.Tag}}", BASE_REPO, check=False).stdout
        for old in listed.split():
            if old.startswith(f"{BASE_REPO}:{kind}-") and old != image:
                self.run("rmi", old, check=False)
        return image

    # --- builds --------------------------------------------------------------------------------

    def build_mounts(self, official: bool) -> list[str]:
        """Build-time mounts (never in a layer) for the official base: the host's CA bundle over the
        image's. A local base already carries it and the host's pip settings (`local_base`)."""
        ca = host_ca_bundle()
        if not official or ca is None:
            return []
        return ["--volume", f"{ca}:{CA_IN_IMAGE}:ro"]

    def build(
        self,
        tag: str,
        context: Path,
        *,
        containerfile: Path | None = None,
        build_args: dict[str, str] | None = None,
        mounts: Sequence[str] = (),
        timeout: float = 900,
    ) -> float:
        """podman build; returns the seconds it took."""
        # docker format: OCI image configs have no HEALTHCHECK, and podman's default drops it
        args = ["build", "--format", "docker", "--network", "host", "--layers", "-t", tag, *mounts]
        for k, v in (build_args or {}).items():
            args += ["--build-arg", f"{k}={v}"]
        if containerfile is not None:
            args += ["-f", str(containerfile)]
        started = time.monotonic()
        self.run(*args, str(context), timeout=timeout)
        return time.monotonic() - started

    def own_layers_size(self, image: str, base: str) -> int:
        """Bytes of the layers `image` adds on top of `base` (history is newest first)."""
        history = self.json("history", "--format", "json", image)
        own = len(history) - len(self.json("history", "--format", "json", base))
        assert own > 0, f"{image} has no history entries of its own above {base}"
        return sum(int(entry.get("size", 0)) for entry in history[:own])
