"""The dependency floors exclude versions with known vulnerabilities
(issue 15, "Dependencies"): a fresh install can never pick one."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# package: the first version without the known problem
SAFE_FROM = {
    "python-multipart": "0.0.18",  # CVE-2024-53981: header parsing DoS
    "starlette": "0.47.2",  # CVE-2024-47874 (multipart), CVE-2025-54121 (large uploads)
}


def test_floors_exclude_known_vulnerable_versions() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for dep in map(Requirement, deps):
        for spec in dep.specifier:
            if spec.operator == ">=":
                floors[dep.name] = Version(spec.version)
    for name, safe in SAFE_FROM.items():
        assert name in floors, f"{name} has no floor"
        assert floors[name] >= Version(safe), f"{name}>={floors[name]} admits vulnerable versions"
