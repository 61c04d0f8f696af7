"""The optional C extensions and the build's revision stamp; everything else is in pyproject.toml.

`siemconn.events._jsonenc` (the event encoder) and `siemconn.events._transcode` (the page transcoder) are
optional: without a C compiler or Python's headers the build goes on without them, and siemconn encodes
with ujson and the standard library instead, with the same bytes (its start-up log line names the
encoder in use).

Every build writes the commit it was built from into the package as `siemconn/REVISION` (what
`siemconn --version` prints): `$SIEMCONN_REVISION` when set (the image build, which has no .git), else
`git rev-parse HEAD` of this checkout (`-dirty` appended when the work tree has changes), else the
REVISION file an sdist carries. The sdist writes the same file into its tree, so a wheel built from the
sdist names the same commit. Nothing is written when none is known.
"""

import os
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
STAMP = Path("siemconn", "REVISION")


def revision() -> str | None:
    if os.environ.get("SIEMCONN_REVISION"):
        return os.environ["SIEMCONN_REVISION"].strip()
    if (ROOT / ".git").exists():
        try:
            head = subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None
        return head + ("-dirty" if dirty else "")
    carried = ROOT / "src" / STAMP
    if carried.exists():
        return carried.read_text().strip() or None
    return None


class BuildPyWithRevision(build_py):
    def run(self) -> None:
        super().run()
        rev = revision()
        if rev and not self.editable_mode:
            (Path(self.build_lib) / STAMP).write_text(rev + "\n")


class SdistWithRevision(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        rev = revision()
        if rev:
            target = Path(base_dir, "src") / STAMP
            target.unlink(missing_ok=True)  # may be a hard link to the checkout's file
            target.write_text(rev + "\n")


FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
HEADER = ["src/siemconn/events/_jsonbuf.h"]

setup(
    cmdclass={"build_py": BuildPyWithRevision, "sdist": SdistWithRevision},
    ext_modules=[
        Extension(
            name,
            [f"src/siemconn/events/{name.rsplit('.', 1)[1]}.c"],
            depends=HEADER,
            optional=True,
            extra_compile_args=FLAGS,
        )
        for name in ("siemconn.events._jsonenc", "siemconn.events._transcode")
    ]
)
