"""Where the client finds its server and token.

In order: explicit arguments, ``DSA_URL``/``DSA_TOKEN``, then what ``dsa
login`` saved in the user's config directory (``credentials.json``, mode
0600), one entry per server; the last server logged in to is the default.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from dsa.errors import NotConfigured


def config_dir() -> Path:
    override = os.environ.get("DSA_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir("dsa"))


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def _load() -> dict[str, Any]:
    try:
        data = json.loads(credentials_path().read_text())
    except FileNotFoundError:
        return {"servers": {}}
    except (OSError, ValueError) as err:
        raise NotConfigured(f"cannot read {credentials_path()}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("servers"), dict):
        raise NotConfigured(f"{credentials_path()} is not a credentials file written by dsa login")
    return data


def normalise_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def save(url: str, token: str, username: str | None = None) -> Path:
    """Remember ``token`` for ``url`` (and make it the default server)."""
    data = _load()
    url = normalise_url(url)
    data["servers"][url] = {"token": token, "username": username}
    data["default"] = url
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None


def resolve(url: str | None = None, token: str | None = None) -> Target:
    """The server and token to use (see the module's docstring)."""
    url = url or os.environ.get("DSA_URL")
    token = token or os.environ.get("DSA_TOKEN")
    if url and token:
        return Target(normalise_url(url), token)
    data = _load()
    if not url:
        url = data.get("default")
        if not url:
            raise NotConfigured("no server: run `dsa login URL`, or set DSA_URL (and DSA_TOKEN)")
    url = normalise_url(url)
    if not token:
        saved = data["servers"].get(url)
        token = saved.get("token") if isinstance(saved, dict) else None
    return Target(url, token)
