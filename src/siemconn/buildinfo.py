"""What this siemconn is: its version and the commit it was built from, for `siemconn --version`.

The version has one source, `siemconn.__version__` (pyproject.toml reads it for the wheel's metadata; the
image's OCI label is given the same value by `make release`). The commit is the `REVISION` file the build
wrote into the package (setup.py: `$SIEMCONN_REVISION`, else the checkout's `git rev-parse HEAD`). An
editable install has no such file: there the checkout itself is asked, because its code is what runs.
Neither look-up can fail the caller: an unknown commit is reported as unknown.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from siemconn import __version__

__all__ = ["revision", "version_line"]

_PACKAGE = Path(__file__).resolve().parent


def revision() -> str | None:
    """The commit this package was built from, `-dirty` when built from a changed work tree; None when
    unknown (a build outside a git checkout without `$SIEMCONN_REVISION`)."""
    stamp = _PACKAGE / "REVISION"
    try:
        text = stamp.read_text().strip()
    except OSError:
        text = ""
    if text:
        return text
    checkout = _PACKAGE.parents[1]  # src/siemconn -> the checkout, for an editable install
    if not (checkout / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "") if head else None


def version_line() -> str:
    """`siemconn 0.1.0 (commit 1a2b...)`, or `(commit unknown)`."""
    return f"siemconn {__version__} (commit {revision() or 'unknown'})"
