"""The image as a release: built twice from the same sources (the second time without podman's layer
cache, so every dependency is downloaded and installed again), both hold the same distributions with
the same versions and the same installed-file hashes, as their SBOMs list them; the SBOM lists exactly
what the image's venv holds; `--version` and the OCI labels name the version and the commit given."""

from __future__ import annotations

import json
from typing import Any

from support.e2e import REPO
from support.podman import BuiltImage, Podman, fact, unique

from siemconn import __version__

SBOM = "/usr/share/doc/siemconn/sbom.cdx.json"
REVISION = "0123456789abcdef0123456789abcdef01234567"

INSTALLED = (
    "import importlib.metadata as md, json, re; "
    "print(json.dumps(sorted([re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(), d.version] "
    "for d in md.distributions())))"
)


def _sbom(podman: Podman, tag: str) -> dict[str, Any]:
    out = podman.run("run", "--rm", "--entrypoint", "cat", tag, SBOM).stdout
    bom: dict[str, Any] = json.loads(out)
    return bom


def _components(bom: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["name"]: (c["version"], c["hashes"][0]["content"]) for c in bom["components"]}


def test_two_builds_hold_the_same_distributions(podman: Podman, image: BuiltImage) -> None:
    args = {"VERSION": __version__, "REVISION": REVISION, "SOURCE": "https://example.invalid/siemconn.git"}
    if not image.official:
        args["PYTHON_IMAGE"] = image.base
    mounts = podman.build_mounts(image.official)
    tags = [unique("localhost/siemconn-release"), unique("localhost/siemconn-release")]
    try:
        _check(podman, tags, args, mounts)
    finally:
        for t in tags:
            podman.run("rmi", "-f", t, check=False)


def _check(podman: Podman, tags: list[str], args: dict[str, str], mounts: list[str]) -> None:
    first = podman.build(tags[0], REPO, build_args=args, mounts=mounts)
    second = podman.build(tags[1], REPO, build_args=args, mounts=[*mounts, "--no-cache"])
    fact(f"release image: built twice, {first:.0f} s and {second:.0f} s without the layer cache")

    boms = [_sbom(podman, t) for t in tags]
    assert _components(boms[0]) == _components(boms[1])
    assert boms[0] == boms[1]  # the whole document, serial number included
    listed = _components(boms[0])
    assert listed["siemconn"][0] == __version__
    assert boms[0]["metadata"]["component"]["properties"] == [
        {"name": "siemconn:revision", "value": REVISION}
    ]

    # the SBOM lists exactly what the image's venv holds
    held = json.loads(podman.run("run", "--rm", "--entrypoint", "python", tags[0], "-c", INSTALLED).stdout)
    assert sorted([n, v] for n, (v, _) in listed.items()) == held

    # the service's dependencies are the locked versions
    lock = (REPO / "requirements.lock").read_text()
    for name, (version, _) in listed.items():
        if name != "siemconn":
            assert f"\n{name}=={version} " in lock, name

    version = podman.run("run", "--rm", tags[0], "--version").stdout.strip()
    assert version == f"siemconn {__version__} (commit {REVISION})"
    labels = podman.json("image", "inspect", tags[0])[0]["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.revision"] == REVISION
    assert labels["org.opencontainers.image.source"] == args["SOURCE"]
