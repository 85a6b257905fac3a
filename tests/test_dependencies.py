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


def _locked() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, _, version = line.split(" ")[0].partition("==")
            pins[name.lower().replace("_", "-")] = Version(version)
    return pins


def test_the_lock_file_pins_every_dependency_within_its_range() -> None:
    """requirements.lock (``make lock``; the Dockerfile installs it with
    --require-hashes) holds a version of every dependency that pyproject.toml
    allows: regenerate it after changing a dependency."""
    pins = _locked()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in map(Requirement, deps):
        name = dep.name.lower().replace("_", "-")
        assert name in pins, f"{dep.name} is not in requirements.lock: run make lock"
        assert pins[name] in dep.specifier, f"{dep.name}=={pins[name]} is outside {dep.specifier}"
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            assert line.rstrip().endswith("\\"), f"no hashes for {line}"


def test_the_locked_set_has_no_known_vulnerabilities() -> None:
    """pip-audit over requirements.lock, when PyPI's vulnerability data can
    be reached from here; skipped, saying so, when it cannot."""
    import json
    import subprocess
    import sys

    import pytest

    try:
        run = subprocess.run(
            [
                sys.executable,
                *("-m", "pip_audit", "-r", str(ROOT / "requirements.lock")),
                *("--no-deps", "--disable-pip", "--progress-spinner", "off", "-f", "json"),
                *("--timeout", "10"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        report = json.loads(run.stdout or "{}")
    except (subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        pytest.skip(f"pip-audit could not reach the vulnerability service: {exc}")
    deps = report.get("dependencies", [])
    audited = [d for d in deps if "skip_reason" not in d]
    if not audited:
        reason = deps[0].get("skip_reason", run.stderr[-300:]) if deps else run.stderr[-300:]
        pytest.skip(f"the vulnerability service (PyPI's JSON API) is not reachable: {reason}")
    vulnerable = {
        f"{d['name']}=={d['version']}": [v["id"] for v in d["vulns"]] for d in audited if d["vulns"]
    }
    assert not vulnerable, f"known vulnerabilities in requirements.lock: {vulnerable}"
