"""Static checks of the plain Kubernetes manifests under k8s/.

Every resource is validated against the Kubernetes OpenAPI schemas bundled with
kubernetes-validate (strict: unknown fields are errors). No cluster, no network.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"

# Oldest and newest Kubernetes versions the installed kubernetes-validate has schemas for.
K8S_VERSIONS = sorted({all_versions()[0], all_versions()[-1]})

IMAGE = "dsa:latest"
DATA_DIR = "/var/lib/dsa"
APP_UID = 10001


def _load() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.y*ml")):
        if path == KUSTOMIZATION:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


DOCS = _load()


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


WORKLOADS = {
    # (kind, name): expected command
    ("Job", "dsa-migrate"): ["dsa", "migrate"],
    ("Deployment", "dsa-api"): ["dsa", "api", "--host", "0.0.0.0", "--port", "8000"],
    ("Deployment", "dsa-worker"): ["dsa", "worker"],
    ("Deployment", "dsa-beat"): ["dsa", "beat"],
}


def test_manifests_found() -> None:
    assert DOCS, "no manifests under k8s/"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    "doc", [d for _, d in DOCS], ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in DOCS]
)
def test_schema_valid(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_resources_are_namespace_less() -> None:
    for filename, doc in DOCS:
        assert "namespace" not in doc["metadata"], filename


def test_kinds_present() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in DOCS}
    assert kinds == {
        ("ConfigMap", "dsa-config"),
        ("Secret", "dsa-secrets"),
        ("PersistentVolumeClaim", "dsa-data"),
        ("Job", "dsa-migrate"),
        ("Deployment", "dsa-api"),
        ("Service", "dsa-api"),
        ("Deployment", "dsa-worker"),
        ("Deployment", "dsa-beat"),
    }


def test_kustomization_lists_every_file() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    on_disk = {p.name for p in K8S.glob("*.y*ml")} - {KUSTOMIZATION.name}
    assert set(listed) == on_disk


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(rendered) == len(DOCS)


@pytest.mark.parametrize(("kind", "name"), list(WORKLOADS), ids=lambda v: str(v))
def test_workload_commands_and_image(kind: str, name: str) -> None:
    container = _container(_one(kind, name))
    assert container["image"] == IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"
    command = container["command"]
    expected = WORKLOADS[(kind, name)]
    assert command[: len(expected)] == expected
    assert "args" not in container


@pytest.mark.parametrize(("kind", "name"), list(WORKLOADS), ids=lambda v: str(v))
def test_workloads_run_as_the_image_user(kind: str, name: str) -> None:
    pod = _one(kind, name)["spec"]["template"]["spec"]
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == APP_UID and sc["runAsGroup"] == APP_UID
    assert pod["automountServiceAccountToken"] is False
    csc = _container(_one(kind, name))["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    # The Dockerfile creates exactly this uid.
    assert re.search(rf"^USER {APP_UID}(:{APP_UID})?$", (ROOT / "Dockerfile").read_text(), re.M)


@pytest.mark.parametrize(("kind", "name"), list(WORKLOADS), ids=lambda v: str(v))
def test_resources_set(kind: str, name: str) -> None:
    resources = _container(_one(kind, name))["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert {"cpu", "memory"} <= set(resources["limits"])


def test_api_deployment() -> None:
    api = _one("Deployment", "dsa-api")
    assert api["spec"]["replicas"] == 2
    container = _container(api)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", 8000), probe


def test_api_service() -> None:
    service = _one("Service", "dsa-api")
    api = _one("Deployment", "dsa-api")
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    [port] = service["spec"]["ports"]
    assert port["port"] == 80
    assert port["targetPort"] in ("http", 8000)
    selector = service["spec"]["selector"]
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    # The selector picks the api pods only.
    for kind, name in WORKLOADS:
        if name != "dsa-api":
            other = _one(kind, name)["spec"]["template"]["metadata"]["labels"]
            assert not selector.items() <= other.items(), name


def test_selectors_match_templates() -> None:
    for kind, name in WORKLOADS:
        if kind != "Deployment":
            continue
        dep = _one(kind, name)
        match = dep["spec"]["selector"]["matchLabels"]
        assert match.items() <= dep["spec"]["template"]["metadata"]["labels"].items(), name


def test_beat_is_a_singleton() -> None:
    beat = _one("Deployment", "dsa-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"


def test_migrate_job() -> None:
    job = _one("Job", "dsa-migrate")
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    env = {e["name"] for e in _container(job)["env"]}
    assert {"DSA_ADMIN_USER", "DSA_ADMIN_PASSWORD", "DSA_DATABASE_URL"} <= env


def test_only_migrations_log_in_as_the_tables_owner() -> None:
    """The API, workers and beat use DSA_DATABASE_URL, the application role
    (dsa_app: the audit log is read and append only for it); the migrate
    job maps the owner's URL onto DSA_DATABASE_URL."""
    secret = _one("Secret", "dsa-secrets")["stringData"]
    assert secret["DSA_DATABASE_URL"].startswith("postgresql://dsa_app:")
    assert not secret["DSA_OWNER_DATABASE_URL"].startswith("postgresql://dsa_app:")
    for kind, name in WORKLOADS:
        env = {e["name"]: e for e in _container(_one(kind, name)).get("env", [])}
        if "DSA_DATABASE_URL" not in env:
            continue
        key = env["DSA_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"]
        assert key == ("DSA_OWNER_DATABASE_URL" if name == "dsa-migrate" else "DSA_DATABASE_URL")


def test_admin_password_only_in_migrate() -> None:
    for kind, name in WORKLOADS:
        if name == "dsa-migrate":
            continue
        env = {e["name"] for e in _container(_one(kind, name)).get("env", [])}
        assert "DSA_ADMIN_PASSWORD" not in env, name


def test_env_refs_exist() -> None:
    config = _one("ConfigMap", "dsa-config")["data"]
    secret_doc = _one("Secret", "dsa-secrets")
    secret = {**secret_doc.get("data", {}), **secret_doc.get("stringData", {})}
    for kind, name in WORKLOADS:
        container = _container(_one(kind, name))
        names = [e["name"] for e in container["env"]]
        assert len(names) == len(set(names)), f"duplicate env in {name}"
        for env in container["env"]:
            ref = env.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                r = ref["configMapKeyRef"]
                assert r["name"] == "dsa-config", name
                assert r["key"] in config, f"{name}: {r['key']} missing from ConfigMap"
            elif "secretKeyRef" in ref:
                r = ref["secretKeyRef"]
                assert r["name"] == "dsa-secrets", name
                assert r["key"] in secret, f"{name}: {r['key']} missing from Secret"
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] == "dsa-config"
            if "secretRef" in source:
                assert source["secretRef"]["name"] == "dsa-secrets"


def test_every_app_pod_gets_the_core_settings() -> None:
    for kind, name in WORKLOADS:
        env = {e["name"] for e in _container(_one(kind, name))["env"]}
        assert {
            "DSA_DATABASE_URL",
            "DSA_REDIS_URL",
            "DSA_STORAGE_URL",
            "DSA_HOME",
            "DSA_JWT_SECRET",
        } <= env, name


def test_secret_values_are_in_secret_not_configmap() -> None:
    config = _one("ConfigMap", "dsa-config")["data"]
    secret = _one("Secret", "dsa-secrets")["stringData"]
    assert {"DSA_JWT_SECRET", "DSA_DATABASE_URL", "DSA_ADMIN_PASSWORD"} <= set(secret)
    assert not {"DSA_JWT_SECRET", "DSA_DATABASE_URL", "DSA_ADMIN_PASSWORD"} & set(config)
    # Placeholders that are obviously to be replaced (docs/operations.md).
    for key, value in secret.items():
        assert "CHANGE-ME" in value, key


def test_shared_read_write_many_volume() -> None:
    pvc = _one("PersistentVolumeClaim", "dsa-data")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    config = _one("ConfigMap", "dsa-config")["data"]
    assert config["DSA_HOME"] == DATA_DIR
    assert config["DSA_STORAGE_URL"] == f"file://{DATA_DIR}/objects"
    for name in ("dsa-api", "dsa-worker"):
        dep = _one("Deployment", name)
        pod = dep["spec"]["template"]["spec"]
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        }
        mounts = {m["mountPath"]: m["name"] for m in _container(dep)["volumeMounts"]}
        assert claims[mounts[DATA_DIR]] == "dsa-data", name
        assert pod["securityContext"]["fsGroup"] == APP_UID, name


def test_import_children_fit_in_the_worker_pod() -> None:
    """Issue 15, "Sandbox": each import child's RLIMIT_AS times the worker's
    concurrency, plus a GiB for the worker itself, stays within the pod's
    memory limit (before: 8 GiB a child in a 4 GiB pod)."""
    container = _container(_one("Deployment", "dsa-worker"))
    command = container["command"]
    concurrency = int(command[command.index("--concurrency") + 1])
    env = {e["name"]: e.get("value") for e in container["env"]}
    per_child = int(env["DSA_IMPORT_MEMORY_LIMIT_BYTES"])
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Gi")
    assert concurrency * per_child + 1024**3 <= int(limit[:-2]) * 1024**3
