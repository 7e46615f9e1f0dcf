"""Run-time configuration, resolved when a command runs (never at import, so --help always works).

Precedence: command-line flag > environment variable > default. This is the only module that
reads os.environ.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from bhds.errors import ConfigError

DEFAULT_AWS_URL = "https://s3-ap-northeast-1.amazonaws.com/data.binance.vision"
DEFAULT_SPOT_API_URL = "https://api.binance.com"
DEFAULT_UM_API_URL = "https://fapi.binance.com"
DEFAULT_CM_API_URL = "https://dapi.binance.com"
DEFAULT_CONCURRENCY = 32
DEFAULT_HTTP_TIMEOUT = 30.0  # seconds a server may stay silent before a request counts as failed
DEFAULT_LEASE_SECONDS = 60.0  # an object-store lease not renewed for this long is a dead holder's

PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")


@dataclass(frozen=True)
class Settings:
    """Everything a workflow needs to know about its environment."""

    base_dir: Path
    n_jobs: int
    http_proxy: str | None
    aws_url: str
    spot_api_url: str
    um_api_url: str
    cm_api_url: str
    concurrency: int = DEFAULT_CONCURRENCY
    lock_timeout: float = 0.0
    http_timeout: float = DEFAULT_HTTP_TIMEOUT
    debug: bool = False
    # Where the per-item work runs: None for the local process pool, else a Dask scheduler's address
    # or `local:N` (a LocalCluster the command starts); from --scheduler or DASK_SCHEDULER_ADDRESS.
    scheduler: str | None = None
    # A fixed "now" (BHDS_NOW) makes runs reproducible; None means the real clock.
    fixed_now: datetime | None = field(default=None)
    # CRYPTO_BASE_DIR given as a URL (s3://bucket/prefix, memory://...): the published store. Then
    # `base_dir` is the local working copy a command runs in (bhds.objstore syncs it).
    store_url: str | None = None
    store: StoreAccess | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        """`<CRYPTO_BASE_DIR>/binance_data`, the root of every artefact."""
        return self.base_dir / "binance_data"

    def now(self) -> datetime:
        """The current UTC time (or the pinned BHDS_NOW)."""
        return self.fixed_now or datetime.now(timezone.utc)

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with command-line values applied; None leaves a setting as it is."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


class StoreAccess:
    """How to reach the object store: the standard AWS variables (an unset one is left to the driver).

    A plain class, not a dataclass: dataclasses compile their methods when the module is imported,
    and every local run imports this module.
    """

    __slots__ = ("endpoint_url", "region", "access_key_id", "secret_access_key", "lease_seconds", "lazy_sync")

    def __init__(self, endpoint_url: str | None = None, region: str | None = None, access_key_id: str | None = None,
                 secret_access_key: str | None = None, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 lazy_sync: bool = True) -> None:
        self.endpoint_url, self.region, self.lease_seconds = endpoint_url, region, lease_seconds
        # Large files of the working copy are placeholders until read (`bhds.objstore.lazy`); False: fetch all.
        self.lazy_sync = lazy_sync
        self.access_key_id, self.secret_access_key = access_key_id, secret_access_key

    def without_secrets(self) -> StoreAccess:
        """A copy without the keys, for work sent to other machines (which use their own credentials)."""
        return StoreAccess(self.endpoint_url, self.region, None, None, self.lease_seconds, self.lazy_sync)

    def __repr__(self) -> str:  # never print the secret
        return f"StoreAccess(endpoint_url={self.endpoint_url!r}, region={self.region!r})"


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number: set it to a number of at least 1, or unset it") from None
    if value < 1:
        raise ConfigError(f"{name}={raw!r} must be at least 1: set it to a positive number, or unset it")
    return value


def _non_negative_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds: set it to e.g. 30, or unset it") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative: set it to e.g. 30, or unset it")
    return value


def _positive_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = _non_negative_float(env, name, default)
    if value <= 0:
        raise ConfigError(f"{name}={env.get(name)!r} must be more than 0 seconds: set it to e.g. 30, or unset it")
    return value


def check_url(value: str, what: str, *, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """Return `value` without a trailing slash, or raise ConfigError naming `what`."""
    parts = urlsplit(value.strip())
    if parts.scheme not in schemes or not parts.hostname:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{what}={value!r} is not a URL: give a full address starting with {wanted}, e.g. http://127.0.0.1:8080")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise ConfigError(f"{what}={value!r} has a bad port number: fix the port, e.g. http://127.0.0.1:8080") from None
    return value.strip().rstrip("/")


def check_proxy(value: str | None, what: str = "--http-proxy") -> str | None:
    """aiohttp speaks to HTTP proxies only; anything else is refused up front."""
    if value is None or not value.strip():
        return None
    return check_url(value, what)


SCHEDULER_SCHEMES = ("tcp", "tls", "inproc", "ucx", "ws", "wss")


def check_scheduler(value: str | None, what: str = "--scheduler") -> str | None:
    """A Dask scheduler address (`tcp://host:port`, `host:port`, `host`) or `local:N`; empty means none."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.startswith("local:"):
        workers = value[len("local:"):]
        if not workers.isdigit() or int(workers) < 1:
            raise ConfigError(f"{what}={value!r}: local:N needs a number of worker processes of at least 1, e.g. local:4")
        return f"local:{int(workers)}"
    parts = urlsplit(value if "://" in value else f"tcp://{value}")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number; none means Dask's 8786)
        good_port = True
    except ValueError:
        good_port = False
    if parts.scheme not in SCHEDULER_SCHEMES or not parts.hostname or not good_port:
        raise ConfigError(f"{what}={value!r} is not a Dask scheduler address: give e.g. tcp://10.0.0.5:8786, "
                          "or local:4 for 4 worker processes on this machine")
    return value


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip()
    return check_url(raw, name) if raw else default


def _fixed_now(env: Mapping[str, str]) -> datetime | None:
    raw = env.get("BHDS_NOW", "").strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"BHDS_NOW={raw!r} is not an ISO-8601 time: use e.g. 2025-01-10T12:00:00Z, or unset it") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def store_url_of(raw: str) -> str | None:
    """`raw` without a trailing slash when it is a URL (`scheme://...`), else None (a local path)."""
    scheme, sep, rest = raw.strip().partition("://")
    if not sep:
        return None
    if not scheme.isidentifier() or not rest.strip("/"):
        raise ConfigError(f"CRYPTO_BASE_DIR={raw!r} is not a store URL: give e.g. s3://bucket/prefix, or a local directory")
    return f"{scheme.lower()}://{rest.strip('/')}"


def _work_dir(env: Mapping[str, str], url: str) -> Path:
    """The local working copy of a store URL: BHDS_WORK_DIR, or one folder per URL in the user cache dir."""
    raw = env.get("BHDS_WORK_DIR", "").strip()
    if raw:
        path = Path(os.path.expanduser(raw))
    else:
        cache = env.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
        import hashlib  # here, not at the top: OpenSSL's start-up is not free and local roots never need it

        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        path = Path(cache) / "bhds" / "work" / digest
    if path.exists() and not path.is_dir():
        raise ConfigError(f"BHDS_WORK_DIR={str(path)!r} is a file, not a directory: point BHDS_WORK_DIR at a directory")
    return path.absolute()


def _store_access(env: Mapping[str, str]) -> StoreAccess:
    endpoint = env.get("AWS_ENDPOINT_URL", "").strip()
    return StoreAccess(
        endpoint_url=check_url(endpoint, "AWS_ENDPOINT_URL") if endpoint else None,
        region=(env.get("AWS_REGION", "") or env.get("AWS_DEFAULT_REGION", "")).strip() or None,
        access_key_id=env.get("AWS_ACCESS_KEY_ID", "").strip() or None,
        secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "").strip() or None,
        lease_seconds=_positive_seconds(env, "BHDS_LEASE_SECONDS", DEFAULT_LEASE_SECONDS),
        lazy_sync=env.get("BHDS_LAZY_SYNC", "").strip().lower() not in ("0", "false", "no"),
    )


def _base_dir(env: Mapping[str, str]) -> Path:
    raw = env.get("CRYPTO_BASE_DIR", "").strip()
    url = store_url_of(raw)
    if url is not None:
        return _work_dir(env, url)
    path = Path(os.path.expanduser(raw or "~/crypto_data"))
    if path.exists() and not path.is_dir():
        raise ConfigError(f"CRYPTO_BASE_DIR={str(path)!r} is a file, not a directory: point CRYPTO_BASE_DIR at a directory")
    return path.absolute()


def debug_from_env(env: Mapping[str, str] | None = None) -> bool:
    """BHDS_DEBUG set to anything but empty, 0, false or no. Readable even when other settings are bad."""
    env = os.environ if env is None else env
    return env.get("BHDS_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def load_settings(env: Mapping[str, str] | None = None, *, debug: bool = False) -> Settings:
    """Build Settings from the environment, checking every value."""
    env = os.environ if env is None else env
    proxy_raw = next((env[name] for name in PROXY_VARIABLES if env.get(name, "").strip()), None)
    proxy_name = next((name for name in PROXY_VARIABLES if env.get(name, "").strip()), "HTTP_PROXY")
    store_url = store_url_of(env.get("CRYPTO_BASE_DIR", ""))
    return Settings(
        base_dir=_base_dir(env),
        n_jobs=_positive_int(env, "CRYPTO_NJOBS", max(1, os.cpu_count() or 1)),
        http_proxy=check_proxy(proxy_raw, proxy_name),
        aws_url=_url(env, "BHDS_AWS_URL", DEFAULT_AWS_URL),
        spot_api_url=_url(env, "BHDS_SPOT_API_URL", DEFAULT_SPOT_API_URL),
        um_api_url=_url(env, "BHDS_UM_API_URL", DEFAULT_UM_API_URL),
        cm_api_url=_url(env, "BHDS_CM_API_URL", DEFAULT_CM_API_URL),
        concurrency=_positive_int(env, "BHDS_CONCURRENCY", DEFAULT_CONCURRENCY),
        lock_timeout=_non_negative_float(env, "BHDS_LOCK_TIMEOUT", 0.0),
        http_timeout=_positive_seconds(env, "BHDS_HTTP_TIMEOUT", DEFAULT_HTTP_TIMEOUT),
        debug=debug or debug_from_env(env),
        fixed_now=_fixed_now(env),
        # As given: only the commands that fan out read it (and check it, `cli._run`); the others ignore it.
        scheduler=env.get("DASK_SCHEDULER_ADDRESS", "").strip() or None,
        store_url=store_url,
        store=_store_access(env) if store_url else None,
    )
