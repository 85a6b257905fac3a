"""Settings: the only module that reads the environment.

Every setting has the prefix ``DSA_`` and is listed in docs/configuration.md
(a test keeps the two in step).
"""

from __future__ import annotations

import os
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import platformdirs
from blake3 import blake3
from pydantic import BeforeValidator, Field, PrivateAttr
from pydantic_settings import BaseSettings, SettingsConfigDict

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(value: object) -> float:
    """Seconds, or a number with a unit: ``90s``, ``10m``, ``24h``, ``7d``, ``2w``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", str(value).strip().lower())
    if m is None:
        raise ValueError(
            f"{value!r} is not a duration: seconds, or a number with s, m, h, d or w (7d)"
        )
    return float(m[1]) * _UNITS[m[2]]


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _rate_rule(value: object) -> str:
    """A rate limit as the ``limits`` library writes it (``300/minute``,
    ``10/15 minutes``), or "" for none."""
    text = str(value).strip()
    if text:
        from limits import parse

        try:
            parse(text)
        except ValueError:
            raise ValueError(
                f"{text!r} is not a rate limit: write it as 300/minute or 10/15 minutes"
            ) from None
    return text


RateRule = Annotated[str, BeforeValidator(_rate_rule)]


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("dsa", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DSA_", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    database_url: str | None = None
    database_read_url: str | None = None
    redis_url: str | None = None
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    cache_dir: Path | None = None
    cache_bytes: int = 2 * 1024**3
    s3_public_endpoint_url: str | None = None

    jwt_secret: str | None = None
    jwt_ttl_seconds: int = 12 * 3600
    admin_user: str = "admin"
    admin_password: str | None = None

    max_upload_bytes: int = 10 * 1024**3
    max_decompressed_bytes: int = 64 * 1024**3
    max_active_jobs_per_user: int = Field(default=20, ge=1)
    chunk_rows: int = 131_072
    row_group_rows: int = 2_048
    chunk_stats: bool = True
    page_cache_bytes: int = 256 * 1024**2
    query_cache_bytes: int = 128 * 1024**2
    db_pool_size: int = 10
    job_stale_after_s: float = 60.0
    import_memory_limit_bytes: int = 8 * 1024**3
    import_cpu_limit_s: int = 3600
    url_import_allow_private: bool = False
    url_import_timeout_s: float = 30.0
    url_import_attempts: int = 3
    url_import_max_seconds: Duration = 3600.0
    tmp_retention_s: float = 24 * 3600.0
    line_index_max_rows: int = 1_000_000_000
    export_batch_rows: int = 65_536
    layout_cache_bytes: int = 4 * 1024**3
    layout_eager_bytes: int = 256 * 1024**2
    export_link_key: str | None = None
    export_link_max_seconds: int = 7 * 86_400
    export_redirect: bool = False
    export_redirect_seconds: int = 300
    fsck_bytes_per_s: int = 256 * 1024**2
    gc_grace: Duration = 24 * 3600.0
    gc_interval: Duration = 0.0
    reflog_retention: Duration = 30 * 86_400.0
    deleted_retention: Duration = 7 * 86_400.0
    webhook_allow_private: bool = False
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60)
    webhook_retry_base_s: float = Field(default=10.0, gt=0)
    webhook_retry_window: Duration = 24 * 3600.0
    webhook_sweep_s: float = Field(default=15.0, gt=0)
    webhook_log_retention: Duration = 30 * 86_400.0
    webhooks_per_dataset: int = Field(default=100, ge=1)
    schedule_tick_s: float = Field(default=10.0, gt=0)
    schedule_min_interval_s: float = Field(default=60.0, ge=0)
    schedule_max_failures: int = Field(default=5, ge=1)
    schedules_per_dataset: int = Field(default=20, ge=1)
    schedule_run_retention: Duration = 30 * 86_400.0
    export_cache_bytes: int = 20 * 1024**3
    failpoints: str = ""
    worker_metrics_port: int | None = None
    trusted_proxies: str = "127.0.0.1"
    cookie_secure: bool | None = None
    max_concurrent_hashes: int | None = Field(default=None, ge=1)
    # rate limits (core/ratelimit.py): "<count>/<period>" as `limits` reads them; "" turns one off
    rate_limit_anonymous: RateRule = "600/minute"
    rate_limit_user: RateRule = "3000/minute"
    rate_limit_login_user: RateRule = "10/15 minutes"
    rate_limit_login_address: RateRule = "100/15 minutes"
    rate_limit_imports: RateRule = "300/hour"
    rate_limit_webhook_tests: RateRule = "30/hour"
    rate_limit_user_lookups: RateRule = "30/hour"
    anonymous_expensive_concurrency: int | None = Field(default=None, ge=1)
    # expensive requests (api/ratelimits.py): slots per API process and per user, and a deadline
    expensive_concurrency: int | None = Field(default=None, ge=1)
    expensive_per_user: int | None = Field(default=None, ge=1)
    expensive_deadline_s: Duration = 30.0
    # service endpoints (api/gate.py): a bearer token for /metrics; docs for signed-in callers only
    metrics_token: str | None = None
    public_docs: bool = True
    log_level: str = "INFO"
    _keys: dict[str, bytes] | None = PrivateAttr(default=None)  # set by confine()

    @property
    def tmp_dir(self) -> Path:
        return self.home / "tmp"

    @property
    def effective_cache_dir(self) -> Path:
        """Where a node keeps what it read from a remote object store."""
        return self.cache_dir or self.home / "cache"

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or (self.home / "objects").resolve().as_uri()

    def effective_jwt_secret(self) -> str:
        """The signing key: the setting, or one generated once and kept in the home."""
        if self._keys is not None:
            raise RuntimeError("this process was given keys, not the secret (Settings.confine)")
        if self.jwt_secret:
            return self.jwt_secret
        path = self.home / "jwt-secret"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".jwt-secret.{secrets.token_hex(4)}")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            try:
                os.link(tmp, path)  # atomic create-if-absent: two processes agree on one key
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return path.read_text().strip()

    @property
    def effective_max_concurrent_hashes(self) -> int:
        """Argon2 hashes at once in one process: the setting, else half the
        cores (at least one), so that sign-ins never take every core."""
        return self.max_concurrent_hashes or max(1, (os.cpu_count() or 2) // 2)

    @property
    def effective_anonymous_expensive_concurrency(self) -> int:
        """Anonymous compares, filtered pages and exports served at once by one
        API process: the setting, else half the cores (at least one), so
        that a crowd of them leaves a core to signed-in users."""
        return self.anonymous_expensive_concurrency or max(1, (os.cpu_count() or 2) // 2)

    @property
    def effective_expensive_concurrency(self) -> int:
        """Expensive requests one API process serves at once: the setting,
        else four per core (they wait on storage as much as they compute)."""
        return self.expensive_concurrency or 4 * (os.cpu_count() or 2)

    @property
    def effective_expensive_per_user(self) -> int:
        """Expensive requests one user has in flight at once in one process:
        the setting, else half the process's slots (at least one)."""
        return self.expensive_per_user or max(1, self.effective_expensive_concurrency // 2)

    def secure_cookies(self, scheme: str) -> bool:
        """Whether cookies carry ``Secure``: as ``DSA_COOKIE_SECURE`` says, or
        (unset) when the request came over https (directly, or through a proxy
        in ``DSA_TRUSTED_PROXIES`` that said so)."""
        return self.cookie_secure if self.cookie_secure is not None else scheme == "https"

    def key(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (``jwt``, ``csrf``, ``export-link``,
        ``line-hash``), derived from the secret with BLAKE3's key derivation:
        knowing one purpose's key (or a MAC made with it) tells nothing of
        another's, and none of them is the secret itself."""
        if self._keys is not None:
            if purpose not in self._keys:
                raise RuntimeError(f"this process holds no {purpose} key (Settings.confine)")
            return self._keys[purpose]
        return _derive(self.effective_jwt_secret(), purpose)

    def confine(self, purposes: tuple[str, ...]) -> None:
        """Forget the credentials and secrets in ``CONFINED_DROPS`` and keep
        only the keys for ``purposes``: what a sandboxed import child holds
        (``features.imports.sandbox``). For good, in this process."""
        keys = {p: self.key(p) for p in purposes}
        for name in CONFINED_DROPS:
            setattr(self, name, None)
        self._keys = keys
        _derive.cache_clear()  # its keys are the secret

    def secret_problem(self) -> str | None:
        """Why ``DSA_JWT_SECRET`` is not fit to run a distributed process on:
        unset, a placeholder left from an example (``CHANGE-ME``), or shorter
        than 32 characters. None when it is fine."""
        secret = self.jwt_secret
        if not secret:
            return "DSA_JWT_SECRET is not set; every API replica and worker needs the same one"
        if is_placeholder(secret):
            return "DSA_JWT_SECRET is still the example's placeholder; set a random value"
        if len(secret) < MIN_SECRET_CHARS:
            return f"DSA_JWT_SECRET is shorter than {MIN_SECRET_CHARS} characters"
        token = self.metrics_token
        if token is not None and (is_placeholder(token) or len(token) < 16):
            return "DSA_METRICS_TOKEN is a placeholder or shorter than 16 characters"
        return None


MIN_SECRET_CHARS = 32
# what ``Settings.confined`` drops: every credential but the object store's
CONFINED_DROPS = (
    "database_url",
    "database_read_url",
    "redis_url",
    "jwt_secret",
    "admin_password",
    "metrics_token",
    "export_link_key",
)
_PLACEHOLDER = re.compile(r"change[-_ ]?me|replace[-_ ]?me|placeholder|example", re.IGNORECASE)


def is_placeholder(value: str) -> bool:
    """Whether a secret is an example's stand-in (``CHANGE-ME…``) left unchanged."""
    return _PLACEHOLDER.search(value) is not None


@lru_cache(maxsize=16)
def _derive(secret: str, purpose: str) -> bytes:
    return blake3(secret.encode(), derive_key_context=f"dsa 2026-12 {purpose} key").digest()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
