"""Build the release's sdist and wheel into DIST, reproducibly: `make release` runs this.

The build backend comes from requirements-build.lock (hash-checked, in a private venv), the sdist is
built from the checkout and the wheel from the unpacked sdist (so the sdist is proven complete), twice:
the two wheels must be byte-identical, else this exits 1 naming the files that differ.
`$SOURCE_DATE_EPOCH` (the commit's time, set by make) fixes every timestamp inside the wheel; the sdist
is rewritten with its members sorted, that time on each, no owner names and a fixed gzip header, since
setuptools stamps its files with the build time;
`$SIEMCONN_REVISION` is the commit the wheel is stamped with. DIST/SHA256SUMS lists both files.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*cmd: str | Path, cwd: Path | None = None) -> None:
    subprocess.run([str(c) for c in cmd], check=True, cwd=cwd)


def build_env(where: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(where)
    py = where / "bin" / "python"
    run(py, "-m", "pip", "install", "-q", "--require-hashes", "-r", ROOT / "requirements-build.lock")
    return py


def normalise_sdist(path: Path, epoch: int) -> None:
    out = io.BytesIO()
    with tarfile.open(path) as src, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for member in sorted(src.getmembers(), key=lambda m: m.name):
            data = src.extractfile(member) if member.isfile() else None
            member.mtime, member.uid, member.gid, member.uname, member.gname = epoch, 0, 0, "", ""
            member.pax_headers = {}
            dst.addfile(member, data)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=epoch) as gz:
        gz.write(out.getvalue())


def differing(a: Path, b: Path) -> list[str]:
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
        names = sorted(set(za.namelist()) | set(zb.namelist()))
        return [
            n for n in names if n not in za.namelist() or n not in zb.namelist() or za.read(n) != zb.read(n)
        ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dist", type=Path, default=ROOT / "dist")
    args = p.parse_args()
    if not os.environ.get("SOURCE_DATE_EPOCH"):
        print("release: set SOURCE_DATE_EPOCH (make release sets the commit's time)", file=sys.stderr)
        return 2
    dist = args.dist.resolve()
    dist.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="siemconn-release-") as tmp:
        work = Path(tmp)
        py = build_env(work / "venv")
        run(py, "-c", f"from setuptools import build_meta as b; b.build_sdist({str(dist)!r})", cwd=ROOT)
        (sdist,) = dist.glob("siemconn-*.tar.gz")
        normalise_sdist(sdist, int(os.environ["SOURCE_DATE_EPOCH"]))
        with tarfile.open(sdist) as tar:
            tar.extractall(work / "src", filter="data")
        (tree,) = (work / "src").iterdir()
        wheels = []
        for n in (1, 2):
            out = work / f"wheel{n}"
            # the C extensions' debug information names the build directory, a temporary one: map it to "."
            env = os.environ | {
                "CFLAGS": f"{os.environ.get('CFLAGS', '')} -ffile-prefix-map={tree}=.".strip()
            }
            args = [
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(out),
                str(tree),
            ]
            subprocess.run([str(py), *args], check=True, env=env)
            wheels.append(next(out.glob("siemconn-*.whl")))
        if wheels[0].read_bytes() != wheels[1].read_bytes():
            print(f"release: two builds of the wheel differ in {differing(*wheels)}", file=sys.stderr)
            return 1
        final = dist / wheels[0].name
        final.write_bytes(wheels[0].read_bytes())
    sums = [f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}" for f in (sdist, final)]
    (dist / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    print("\n".join(sums))
    return 0


if __name__ == "__main__":
    sys.exit(main())
