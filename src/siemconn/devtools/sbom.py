"""A CycloneDX 1.5 JSON SBOM of the distributions installed in this interpreter's environment.

`python -m siemconn.devtools.sbom --output FILE` is run by the image build (with the image's venv, so it
describes exactly what the image holds) and by `make sbom` (for a venv install). It needs only the
standard library, so it runs wherever siemconn is installed.

Invariants:
* Every distribution that `importlib.metadata` finds on `sys.path` (the installed set pip reports) is one
  component, with its name, version and package URL (`pkg:pypi/NAME@VERSION`); a name that appears twice
  on the path is listed once, the copy Python imports (the first).
* Each component carries the SHA-256 of its `RECORD` file, which lists every installed file of the
  distribution with that file's own SHA-256; so two installs with the same component hash hold the same
  files, byte for byte. A distribution without a RECORD (rare: not installed by a wheel installer) gets
  no hash and a property saying so, never a made-up one.
* The document is deterministic: components are sorted, the serial number is derived from the content,
  and the timestamp is `$SOURCE_DATE_EPOCH` when set (the release build sets it) and absent otherwise,
  so the same install always gives the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import re
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from siemconn.buildinfo import revision

__all__ = ["build_sbom", "canonical_name", "component", "main"]

_NAMESPACE = uuid.UUID("6f1c8c52-3f49-4c55-9a59-0f4e3c1f5e29")  # fixed: serial numbers from content


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: `Typing_Extensions` and `typing-extensions` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _record_hash(dist: md.Distribution) -> str | None:
    """SHA-256 of the RECORD file's bytes as installed (read_text would translate its CRLF lines)."""
    for entry in dist.files or []:
        if entry.name == "RECORD" and entry.parent.name.endswith(".dist-info"):
            try:
                return hashlib.sha256(Path(str(dist.locate_file(entry))).read_bytes()).hexdigest()
            except OSError:
                return None
    return None


def component(dist: md.Distribution) -> dict[str, Any]:
    name = canonical_name(dist.metadata["Name"])
    version = dist.version
    purl = f"pkg:pypi/{name}@{version}"
    entry: dict[str, Any] = {
        "type": "library",
        "bom-ref": purl,
        "name": name,
        "version": version,
        "purl": purl,
    }
    licence = dist.metadata["License-Expression"]
    if licence:
        entry["licenses"] = [{"expression": licence}]
    digest = _record_hash(dist)
    if digest is not None:
        entry["hashes"] = [{"alg": "SHA-256", "content": digest}]
        entry["properties"] = [{"name": "siemconn:hash-of", "value": "RECORD"}]
    else:
        entry["properties"] = [{"name": "siemconn:hash-of", "value": "none: no RECORD file"}]
    return entry


def build_sbom(path: list[str] | None = None) -> dict[str, Any]:
    """The SBOM of the distributions on `path` (default `sys.path`)."""
    seen: dict[str, dict[str, Any]] = {}
    for dist in md.distributions(path=path if path is not None else sys.path):
        name = dist.metadata["Name"]
        if not name or canonical_name(name) in seen:
            continue
        seen[canonical_name(name)] = component(dist)
    components = [seen[k] for k in sorted(seen)]
    own = seen.get("siemconn")
    subject: dict[str, Any] = {"type": "application", "name": "siemconn"}
    if own is not None:
        subject["version"] = own["version"]
        rev = revision()
        if rev:
            subject["properties"] = [{"name": "siemconn:revision", "value": rev}]
    metadata: dict[str, Any] = {
        "tools": {"components": [{"type": "application", "name": "siemconn.devtools.sbom"}]},
        "component": subject,
    }
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        metadata["timestamp"] = datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"metadata": metadata, "components": components}
    serial = uuid.uuid5(_NAMESPACE, json.dumps(body, sort_keys=True))
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        **body,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m siemconn.devtools.sbom",
        description="Write a CycloneDX JSON SBOM of the distributions installed in this environment.",
    )
    p.add_argument("--output", "-o", type=Path, help="file to write (default: standard output)")
    args = p.parse_args(argv)
    text = json.dumps(build_sbom(), indent=2, sort_keys=True) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"{args.output}: {len(json.loads(text)['components'])} components", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
