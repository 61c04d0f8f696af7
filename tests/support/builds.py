"""Real builds of siemconn, old and current, each installed as a wheel into its own venv.

`Builder.wheel(commit)` builds the wheel of a commit from the git history (`git archive`, so nothing of
the work tree leaks in); `Builder.wheel(None)` builds the work tree as it is (the tracked files, with
their uncommitted changes). Both are built with the locked build backend (requirements-build.lock,
hash-checked, in a private venv) and no build isolation. `Builder.install(wheel)` makes a venv holding
only that wheel; the dependencies are this interpreter's site-packages, added by a .pth file (so no
index is asked, and the old build runs on the locked versions; the editable siemconn there is never
imported because .pth files inside an added directory are not processed).
"""

from __future__ import annotations

import io
import subprocess
import sys
import sysconfig
import tarfile
import venv
from pathlib import Path

from support.e2e import REPO

__all__ = ["Builder", "commit_available"]


def commit_available(commit: str) -> bool:
    """True when this checkout's history holds `commit` (a shallow clone may not)."""
    return (
        subprocess.run(
            ["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )


class Builder:
    def __init__(self, work: Path) -> None:
        self.work = work
        self._backend: Path | None = None

    def _build_python(self) -> Path:
        if self._backend is None:
            env = self.work / "build-venv"
            venv.EnvBuilder(with_pip=True).create(env)
            py = env / "bin" / "python"
            subprocess.run(
                [
                    str(py),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--require-hashes",
                    "-r",
                    str(REPO / "requirements-build.lock"),
                ],
                check=True,
                timeout=600,
            )
            self._backend = py
        return self._backend

    def _source(self, commit: str | None) -> Path:
        tree = self.work / f"src-{commit or 'worktree'}"
        tree.mkdir()
        if commit is not None:
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", "--format=tar", commit],
                capture_output=True,
                check=True,
                timeout=120,
            ).stdout
        else:
            files = subprocess.run(
                ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                capture_output=True,
                check=True,
                timeout=60,
            ).stdout.split(b"\0")
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for name in filter(None, files):
                    path = REPO / name.decode()
                    if path.is_file():
                        tar.add(path, arcname=name.decode())
            archive = buf.getvalue()
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        return tree

    def wheel(self, commit: str | None, revision: str) -> Path:
        """The wheel of `commit` (None: the work tree), stamped with `revision` where the build knows how."""
        tree = self._source(commit)
        out = self.work / f"wheel-{commit or 'worktree'}"
        subprocess.run(
            [
                str(self._build_python()),
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(out),
                str(tree),
            ],
            check=True,
            timeout=600,
            env={"PATH": "/usr/bin:/bin", "SIEMCONN_REVISION": revision, "HOME": str(self.work)},
        )
        (wheel,) = out.glob("siemconn-*.whl")
        return wheel

    def install(self, wheel: Path, name: str) -> Path:
        """A venv with only `wheel` installed; returns its python."""
        env = self.work / f"venv-{name}"
        venv.EnvBuilder(with_pip=False).create(env)
        py = env / "bin" / "python"
        purelib = subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        Path(purelib, "siemconn-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(py),
                "install",
                "-q",
                "--no-deps",
                "--no-compile",
                str(wheel),
            ],
            check=True,
            timeout=300,
        )
        return py
