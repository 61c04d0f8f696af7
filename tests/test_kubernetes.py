"""packaging/kubernetes: schema-valid manifests (kubernetes-validate ships the schemas, no cluster or
network needed) that keep the image's contract: one replica, the queue on a volume claim, the secret as
a file, the image's own health check, non-root with a read-only root and no capabilities."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from siemconn.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "packaging" / "kubernetes"
MANIFESTS = sorted(K8S.glob("*.yaml"))


def docs() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in MANIFESTS:
        out.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return out


def by_kind(kind: str) -> dict[str, Any]:
    found = [d for d in docs() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def dockerfile(keyword: str) -> str:
    """The last value of a Dockerfile instruction (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    values: list[str] = re.findall(rf"^{keyword}\s+(.*)$", text, re.M)
    assert values, keyword
    return values[-1].strip()


def healthcheck_cmd() -> list[str]:
    hc = dockerfile("HEALTHCHECK")
    return list(json.loads(hc[hc.index("CMD ") + 4 :]))


def container() -> dict[str, Any]:
    (c,) = by_kind("StatefulSet")["spec"]["template"]["spec"]["containers"]
    return dict(c)


def test_there_are_manifests() -> None:
    assert {p.name for p in MANIFESTS} >= {"statefulset.yaml", "configmap.yaml", "secret.yaml"}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_schema_valid_strict(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        # strict: an unknown or misspelt field is an error, not silently dropped by the API server
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_validator_rejects_a_broken_manifest() -> None:
    """The validator really checks (a typo in a field name fails)."""
    broken = by_kind("StatefulSet")
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_one_replica_with_the_queue_on_a_claim() -> None:
    sts = by_kind("StatefulSet")
    assert sts["spec"]["replicas"] == 1
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m for m in container()["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]]["mountPath"] == "/app/data"
    assert not mounts[claim["metadata"]["name"]].get("readOnly")


def test_every_mount_has_a_volume_and_every_reference_exists() -> None:
    spec = by_kind("StatefulSet")["spec"]
    pod = spec["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
    for m in container()["volumeMounts"]:
        assert m["name"] in volumes or m["name"] in claims, m
    cm, secret = by_kind("ConfigMap"), by_kind("Secret")
    for v in volumes.values():
        if "configMap" in v:
            assert v["configMap"]["name"] == cm["metadata"]["name"]
            assert all(i["key"] in cm["data"] for i in v["configMap"].get("items", []))
        if "secret" in v:
            assert v["secret"]["secretName"] == secret["metadata"]["name"]
            assert all(i["key"] in secret["stringData"] for i in v["secret"].get("items", []))
    for e in container()["env"]:
        ref = e.get("valueFrom", {}).get("configMapKeyRef")
        if ref:
            assert ref["name"] == cm["metadata"]["name"] and ref["key"] in cm["data"], e
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def test_the_secret_is_a_file_read_through_client_secret_file() -> None:
    c = container()
    env = {e["name"]: e for e in c["env"]}
    assert "CLIENT_SECRET" not in env, "the secret must not be an environment variable"
    path = Path(env["CLIENT_SECRET_FILE"]["value"])
    pod = by_kind("StatefulSet")["spec"]["template"]["spec"]
    secret_volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    (mount,) = [m for m in c["volumeMounts"] if m["name"] in secret_volumes]
    assert mount["readOnly"] is True and Path(mount["mountPath"]) == path.parent
    items = {i["path"]: i["key"] for i in secret_volumes[mount["name"]]["items"]}
    assert items[path.name] == "client_secret"
    assert secret_volumes[mount["name"]]["defaultMode"] & 0o007 == 0, "others may not read the secret"


def test_config_json_is_valid_for_siemconn(tmp_path: Path) -> None:
    cm = by_kind("ConfigMap")
    (tmp_path / "config.json").write_text(cm["data"]["config.json"])
    (tmp_path / "secret").write_text("x")
    env = {"BASE_URL": cm["data"]["BASE_URL"], "CLIENT_ID": cm["data"]["CLIENT_ID"]}
    env["CLIENT_SECRET_FILE"] = str(tmp_path / "secret")
    settings = load_settings(tmp_path / "config.json", environ=env)
    # each TLS server without tls_ca_file finds its CA as cert/NAME.pem: the ConfigMap carries it
    mounted = {i["path"] for v in by_kind("StatefulSet")["spec"]["template"]["spec"]["volumes"]
               if v["name"] == "cert" for i in v["configMap"]["items"]}  # fmt: skip
    for server in settings.configuration.server:
        if server.server_protocol.upper() == "TLS" and server.tls_ca_file is None:
            assert f"{server.name}.pem" in mounted, server.name
    mounts = {m["mountPath"] for m in container()["volumeMounts"]}
    assert {"/app/config.json", "/app/cert"} <= mounts


def test_probes_are_the_images_health_check() -> None:
    c = container()
    cmd = healthcheck_cmd()
    assert c["readinessProbe"]["exec"]["command"] == cmd
    assert c["livenessProbe"]["exec"]["command"] == [*cmd, "--liveness"]
    start_period = re.search(r"--start-period=(\d+)s", dockerfile("HEALTHCHECK"))
    assert start_period and c["livenessProbe"]["initialDelaySeconds"] >= int(start_period.group(1))


def test_non_root_read_only_no_capabilities() -> None:
    pod = by_kind("StatefulSet")["spec"]["template"]["spec"]
    c = container()
    uid, gid = (int(x) for x in dockerfile("USER").split(":"))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
    assert pod["securityContext"]["fsGroup"] == gid  # the claim's files belong to the service user
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    # with a read-only root, everything siemconn writes is a volume
    writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
    assert {"/app/data", "/app/logs"} <= writable


def test_runs_the_images_command_within_the_compose_grace_period() -> None:
    c = container()
    assert c["args"] == json.loads(dockerfile("CMD"))
    assert "command" not in c, "keep the image's ENTRYPOINT"
    grace = re.search(r"stop_grace_period:\s*(\d+)s", (ROOT / "docker-compose.yml").read_text())
    assert grace
    pod = by_kind("StatefulSet")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == int(grace.group(1))
