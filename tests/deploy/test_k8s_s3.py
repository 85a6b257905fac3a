"""Static checks of the S3 variant of the Kubernetes manifests (k8s-s3/, a
kustomize overlay of k8s/; issue 13): rendered with ``kubectl kustomize``
and every resource validated against the Kubernetes schemas, strict. No
cluster, no network."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.test_k8s import K8S_VERSIONS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s-s3")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_resource_is_valid(rendered: list[dict[str, Any]], version: str) -> None:
    for doc in rendered:
        kubernetes_validate.validate(doc, version, strict=True)


def test_nodes_share_no_volume_only_the_bucket(rendered: list[dict[str, Any]]) -> None:
    assert not [d for d in rendered if d["kind"] == "PersistentVolumeClaim"]
    config = _one(rendered, "ConfigMap", "dsa-config")["data"]
    assert config["DSA_STORAGE_URL"].startswith("s3://")
    for name in ("dsa-api", "dsa-worker"):
        pod = _one(rendered, "Deployment", name)["spec"]["template"]["spec"]
        assert [v for v in pod["volumes"] if "persistentVolumeClaim" in v] == []
        assert pod["volumes"][0]["name"] == "data" and "emptyDir" in pod["volumes"][0]
        # the node cache lives in that emptyDir, with room left for imports' work
        limit = pod["volumes"][0]["emptyDir"]["sizeLimit"]
        assert (
            limit.endswith("Gi") and int(config["DSA_CACHE_BYTES"]) <= int(limit[:-2]) * 2**30 // 4
        )
    for name in ("dsa-api", "dsa-worker", "dsa-beat"):
        container = _one(rendered, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert {"secretRef": {"name": "dsa-s3"}} in container["envFrom"]
        assert "DSA_S3_ENDPOINT_URL" in {e["name"] for e in container["env"]}
    secret = _one(rendered, "Secret", "dsa-s3")
    assert set(secret["stringData"]) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_workers_scale_on_cpu(rendered: list[dict[str, Any]]) -> None:
    hpa = _one(rendered, "HorizontalPodAutoscaler", "dsa-worker")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "dsa-worker",
    }
    assert hpa["minReplicas"] >= 1 and hpa["maxReplicas"] > hpa["minReplicas"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
