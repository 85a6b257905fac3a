"""Static checks of docker-compose.yml, the Dockerfile and .dockerignore.

No Docker and no network: the files are parsed, not run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

APP_COMMANDS = {
    "migrate": ["dsa", "migrate"],
    "api": ["dsa", "api", "--host", "0.0.0.0", "--port", "8000"],
    "worker": ["dsa", "worker"],
    "beat": ["dsa", "beat"],
}
APP_SERVICES = list(APP_COMMANDS)
DATA_DIR = "/var/lib/dsa"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    assert isinstance(deps, dict), "depends_on must use the long form with conditions"
    return {name: spec["condition"] for name, spec in deps.items()}


def _volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target path -> source (named volume) for short-syntax volume entries."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        mounts[target] = source
    return mounts


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


# ----------------------------------------------------------------- services


def test_all_services_present(services: dict[str, Any]) -> None:
    assert {"postgres", "redis", *APP_SERVICES} <= set(services)


def test_infrastructure_images(services: dict[str, Any]) -> None:
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_build_one_image(services: dict[str, Any], name: str) -> None:
    service = services[name]
    assert service["image"] == "dsa:latest"
    build = service["build"]
    context = build["context"] if isinstance(build, dict) else build
    assert context == "."


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_commands(services: dict[str, Any], name: str) -> None:
    assert services[name]["command"] == APP_COMMANDS[name]


def test_depends_on_conditions(services: dict[str, Any]) -> None:
    assert _depends(services["migrate"])["postgres"] == "service_healthy"
    api = _depends(services["api"])
    assert api["migrate"] == "service_completed_successfully"
    assert api["redis"] == "service_healthy"
    for name in ("worker", "beat"):
        deps = _depends(services[name])
        assert deps["migrate"] == "service_completed_successfully", name
        assert deps["redis"] == "service_healthy", name


def test_migrate_runs_once(services: dict[str, Any]) -> None:
    assert services["migrate"].get("restart", "no") == "no"
    for name in ("api", "worker", "beat", "postgres", "redis"):
        assert services[name].get("restart") == "unless-stopped", name


def test_healthchecks(services: dict[str, Any]) -> None:
    pg = services["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in " ".join(pg)
    redis = services["redis"]["healthcheck"]["test"]
    assert redis == ["CMD", "redis-cli", "ping"]

    api = services["api"]["healthcheck"]["test"]
    assert api[0] == "CMD"
    assert api[1] == "python"  # the slim image has no curl
    script = api[-1]
    assert "urllib" in script and "http://127.0.0.1:8000/readyz" in script
    compile(script, "<api healthcheck>", "exec")


def test_env_points_at_compose_services(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert isinstance(env, dict), name
        # migrations as the tables' owner; everything else as the application role
        user, password = ("dsa", "POSTGRES_PASSWORD")
        if name != "migrate":
            user, password = ("dsa_app", "DSA_APP_DB_PASSWORD")
        assert re.fullmatch(
            rf"postgresql://{user}:\$\{{{password}:\?[^}}]+\}}@postgres:5432/dsa",
            env["DSA_DATABASE_URL"],
        ), name
        assert env["DSA_REDIS_URL"] == "redis://redis:6379/0"
        assert env["DSA_STORAGE_URL"] == f"file://{DATA_DIR}/objects"
        assert env["DSA_HOME"] == DATA_DIR


def test_secrets_are_not_hard_coded(services: dict[str, Any]) -> None:
    """Secrets come from the environment / .env, and are required (no default)."""
    migrate_env = services["migrate"]["environment"]
    for key in ("DSA_JWT_SECRET", "DSA_ADMIN_PASSWORD"):
        assert re.fullmatch(r"\$\{" + key + r":\?[^}]+\}", migrate_env[key]), key
    assert "${POSTGRES_PASSWORD:?" in services["migrate"]["environment"]["DSA_DATABASE_URL"]
    for name in ("api", "worker", "beat"):
        assert "${DSA_APP_DB_PASSWORD:?" in services[name]["environment"]["DSA_DATABASE_URL"]
    postgres = services["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert postgres["DSA_APP_DB_PASSWORD"].startswith("${DSA_APP_DB_PASSWORD:?")
    # The admin password is only handed to the one-shot migrate service.
    for name in ("api", "worker", "beat"):
        assert "DSA_ADMIN_PASSWORD" not in services[name]["environment"], name


def test_postgres_makes_the_application_role_on_first_start(services: dict[str, Any]) -> None:
    """The init script the postgres image runs once creates dsa_app (LOGIN,
    DSA_APP_DB_PASSWORD); migration 0009 gives it its rights."""
    mounts = _volume_mounts(services["postgres"])
    assert mounts["/docker-entrypoint-initdb.d"] == "./deploy/postgres-init"
    script = ROOT / "deploy" / "postgres-init" / "10-dsa-app-role.sh"
    text = script.read_text()
    assert script.stat().st_mode & 0o111, "the image runs *.sh only when executable"
    assert "CREATE ROLE dsa_app LOGIN PASSWORD :'pw'" in text
    assert 'pw="$DSA_APP_DB_PASSWORD"' in text and "ON_ERROR_STOP=1" in text
    grants = (ROOT / "migrations" / "0009_app_role.sql").read_text()
    assert "REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM dsa_app" in grants


def test_app_services_share_the_data_volume(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    api = _volume_mounts(services["api"])
    worker = _volume_mounts(services["worker"])
    assert DATA_DIR in api and DATA_DIR in worker
    assert api[DATA_DIR] == worker[DATA_DIR]
    assert api[DATA_DIR] in compose["volumes"], "must be a named volume"
    # ... and it is the one that holds DSA_HOME (tmp/) and the objects.
    assert services["api"]["environment"]["DSA_STORAGE_URL"].startswith(f"file://{DATA_DIR}/")


def test_data_volumes_are_named(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert _volume_mounts(services["postgres"])["/var/lib/postgresql/data"] in compose["volumes"]
    assert _volume_mounts(services["redis"])["/data"] in compose["volumes"]


def test_ports(services: dict[str, Any]) -> None:
    assert services["api"]["ports"] == ["8000:8000"]
    for name in ("postgres", "redis", "migrate", "worker", "beat"):
        assert "ports" not in services[name], f"{name} should not be published"


# --------------------------------------------------------------- Dockerfile


def test_dockerfile_installs_the_project() -> None:
    runs = [rest for kw, rest in _dockerfile_instructions() if kw == "RUN"]
    assert any(re.search(r"\bpip install (?:[^\n]* )?\.(?:\s|$)", r) for r in runs), runs
    assert any("build-essential" in r for r in runs), "the C extension needs a compiler"
    copies = [rest for kw, rest in _dockerfile_instructions() if kw == "COPY"]
    assert ". ." in copies


def test_dockerfile_runs_dsa_as_non_root() -> None:
    instructions = _dockerfile_instructions()
    cmd = [rest for kw, rest in instructions if kw == "CMD"][-1]
    assert json.loads(cmd) == APP_COMMANDS["api"]
    # No ENTRYPOINT: compose and k8s give the full `dsa <sub>` command.
    assert not [rest for kw, rest in instructions if kw == "ENTRYPOINT"]
    user = [rest for kw, rest in instructions if kw == "USER"][-1]
    assert re.fullmatch(r"10001(:10001)?", user), "numeric uid, matched by k8s runAsUser"
    assert any("useradd" in r and "--uid 10001" in r for kw, r in instructions if kw == "RUN")


def test_dockerignore_keeps_secrets_and_venv_out() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env"} <= patterns
    for needed in (
        "pyproject.toml",
        "README.md",
        "api",
        "core",
        "worker",
        "features",
        "migrations",
        "*.md",
        "*.py",
        "*.toml",
        "*.sql",
        "*.c",
    ):
        assert needed not in patterns, f"{needed} is needed to build the image"


# ---------------------------------------------------------------------- CLI


@pytest.mark.skipif(
    not (ROOT / "api" / "cli.py").exists(), reason="api/cli.py (the dsa CLI) is not written yet"
)
@pytest.mark.parametrize("sub", ["migrate", "api", "worker", "beat"])
def test_cli_accepts_the_subcommands_used_in_compose(sub: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", sub, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    if sub == "api":
        assert "--host" in result.stdout and "--port" in result.stdout
    if sub == "worker":
        assert "--concurrency" in result.stdout
