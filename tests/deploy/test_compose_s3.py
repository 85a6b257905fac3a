"""Static checks of docker-compose.s3.yml, the S3 override of
docker-compose.yml (issue 13): no Docker, the files are parsed and merged
here as Compose merges them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


class _ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's merge tags: ``!reset`` (drop the base's value)."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: None)


@pytest.fixture(scope="module")
def override() -> dict[str, Any]:
    return yaml.load((ROOT / "docker-compose.s3.yml").read_text(), Loader=_ComposeLoader)  # noqa: S506


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


APPS = ("migrate", "api", "worker", "beat")


def test_app_services_use_the_bucket(override: dict[str, Any], base: dict[str, Any]) -> None:
    services = override["services"]
    for name in APPS:
        assert name in base["services"]
        env = {**base["services"][name]["environment"], **services[name]["environment"]}
        assert env["DSA_STORAGE_URL"].startswith("s3://")
        assert env["DSA_S3_ENDPOINT_URL"] == "http://minio:9000"
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env[key].startswith("${S3_") and ":?" in env[key]  # never a default
        assert services[name]["depends_on"]["minio-init"]["condition"] == (
            "service_completed_successfully"
        )


def test_no_volume_is_shared_between_app_containers(override: dict[str, Any]) -> None:
    services = override["services"]
    for name in ("migrate", "api", "worker"):
        assert "volumes" in services[name] and services[name]["volumes"] is None  # !reset
    assert "volumes" not in services["beat"]
    assert set(override["volumes"]) == {"minio-data"}


def test_the_bucket_is_made_before_the_apps_start(override: dict[str, Any]) -> None:
    minio, init = override["services"]["minio"], override["services"]["minio-init"]
    assert minio["healthcheck"]["test"][:2] == ["CMD", "mc"]
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    script = " ".join(init["entrypoint"])
    assert "mc mb --ignore-existing s3/dsa" in script
