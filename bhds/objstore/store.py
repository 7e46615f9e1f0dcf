"""Whole objects under one store URL: put, get, list with ETags, and the conditional writes leases need.

S3 (s3fs) is the driver the protocol is built for: a PUT is atomic (single PUT, or a multipart
upload that is completed or not at all), `If-None-Match: *` creates an object only if it does
not exist, `If-Match: <etag>` replaces or deletes it only if nobody changed it. Other fsspec
file systems (`memory://` for tests, `gs://`, `az://` when their driver is installed) get the
same calls with the condition checked in this process only: fine for one writer at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from bhds.errors import ConfigError, NetworkError
from bhds.settings import StoreAccess

# Files above this go up as a multipart upload (completed whole or not at all), below as one PUT.
MULTIPART_BYTES = 64 * 2**20
PARALLEL_TRANSFERS = 16
_DRIVERS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


@dataclass(frozen=True)
class Head:
    etag: str
    age: float  # seconds since the object was last written, by the server's clock


def _etag(raw: str | None) -> str:
    return (raw or "").strip('"')


def open_store(url: str, access: StoreAccess | None = None) -> ObjectStore:
    """The store at `url` (`scheme://bucket/prefix`); a missing driver is a one-line error naming the install."""
    scheme = url.split("://", 1)[0]
    try:
        import fsspec

        fs_class = fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as exc:
        if scheme in ("s3", "s3a") or "fsspec" in str(exc) or isinstance(exc, ModuleNotFoundError) and exc.name == "fsspec":
            raise ConfigError(f"CRYPTO_BASE_DIR={url!r} needs the S3 driver: pip install 'bhds[s3]'") from None
        package = _DRIVERS.get(scheme)
        hint = f"pip install {package}" if package else "use s3://, gs://, az:// or memory://"
        raise ConfigError(f"CRYPTO_BASE_DIR={url!r}: no driver for {scheme}:// ({exc}): {hint}") from None
    access = access or StoreAccess()
    if scheme in ("s3", "s3a"):
        client_kwargs = {"region_name": access.region} if access.region else {}
        fs = fs_class(endpoint_url=access.endpoint_url, key=access.access_key_id, secret=access.secret_access_key,
                      client_kwargs=client_kwargs, skip_instance_cache=True)
        return S3Store(url, fs)
    return FsspecStore(url, fs_class())


class ObjectStore:
    """Keys are relative to the store URL (`binance_data/...`)."""

    def __init__(self, url: str, fs: Any) -> None:
        self.url = url.rstrip("/")
        self.fs = fs
        self.root = self.url.split("://", 1)[1]  # bucket/prefix

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def check(self) -> None:
        """Fail early when the store cannot be reached (S3: the bucket and the credentials)."""

    # Subclasses implement these.
    def read(self, key: str) -> tuple[bytes, str] | None: raise NotImplementedError  # noqa: E704
    def read_tail(self, key: str, size: int, length: int) -> bytes: raise NotImplementedError  # noqa: E704 - the last `length` bytes of an object of `size`
    def put(self, key: str, data: bytes) -> str: raise NotImplementedError  # noqa: E704
    def create(self, key: str, data: bytes) -> str | None: raise NotImplementedError  # noqa: E704
    def replace(self, key: str, data: bytes, etag: str) -> str | None: raise NotImplementedError  # noqa: E704
    def delete_if(self, key: str, etag: str) -> bool: raise NotImplementedError  # noqa: E704
    def head(self, key: str) -> Head | None: raise NotImplementedError  # noqa: E704
    def list(self, prefix: str) -> dict[str, str]: raise NotImplementedError  # noqa: E704
    def folders(self, prefix: str) -> list[str]: raise NotImplementedError  # noqa: E704 - keys ending in "/" that start with prefix
    def put_files(self, items: Iterable[tuple[Path, str]]) -> dict[str, str]: raise NotImplementedError  # noqa: E704
    def get_files(self, items: Iterable[tuple[str, Path]]) -> None: raise NotImplementedError  # noqa: E704
    def delete(self, keys: Iterable[str]) -> None: raise NotImplementedError  # noqa: E704


class S3Store(ObjectStore):
    """S3 through s3fs' async client: transfers run PARALLEL_TRANSFERS at a time on s3fs' own loop."""

    def __init__(self, url: str, fs: Any) -> None:
        super().__init__(url, fs)
        self.bucket, _, prefix = self.root.partition("/")
        self.prefix = f"{prefix}/" if prefix else ""

    def _sync(self, coro: Any) -> Any:
        from fsspec.asyn import sync

        try:
            return sync(self.fs.loop, lambda: coro)
        except (FileNotFoundError, FileExistsError, PermissionError):
            raise
        except OSError as exc:
            if "pre-conditions" in str(exc) or "PreconditionFailed" in str(exc) or "onflict" in str(exc):
                raise
            raise NetworkError(f"object store {self.url}: {exc}: check AWS_ENDPOINT_URL and the credentials, then run again") from exc
        except Exception as exc:  # botocore's own: no connection, bad endpoint, expired token...
            if type(exc).__module__.split(".")[0] in ("botocore", "aiobotocore"):
                raise NetworkError(f"object store {self.url}: {exc}: check AWS_ENDPOINT_URL and the network, then run again") from exc
            raise

    def check(self) -> None:
        """Fail early, in one line, when the bucket is missing or refuses these credentials."""
        try:
            self._sync(self.fs._call_s3("head_bucket", Bucket=self.bucket))
        except FileNotFoundError:
            raise ConfigError(f"CRYPTO_BASE_DIR={self.url!r}: bucket {self.bucket!r} does not exist: create it, "
                              "or check AWS_ENDPOINT_URL and AWS_REGION") from None
        except PermissionError:
            raise ConfigError(f"CRYPTO_BASE_DIR={self.url!r}: access to bucket {self.bucket!r} denied: "
                              "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from None

    def _call(self, method: str, key: str, **kwargs: Any) -> dict:
        return self._sync(self.fs._call_s3(method, Bucket=self.bucket, Key=self.prefix + key, **kwargs))

    def read(self, key: str) -> tuple[bytes, str] | None:
        async def go() -> tuple[bytes, str] | None:
            try:
                answer = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.prefix + key)
            except FileNotFoundError:
                return None
            async with answer["Body"] as body:
                return await body.read(), _etag(answer.get("ETag"))
        return self._sync(go())

    def read_tail(self, key: str, size: int, length: int) -> bytes:
        async def go() -> bytes:
            answer = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.prefix + key,
                                            Range=f"bytes={max(0, size - length)}-{size - 1}")
            async with answer["Body"] as body:
                return await body.read()
        return self._sync(go())

    def put(self, key: str, data: bytes) -> str:
        return _etag(self._call("put_object", key, Body=data).get("ETag"))

    def create(self, key: str, data: bytes) -> str | None:
        try:
            return _etag(self._call("put_object", key, Body=data, IfNoneMatch="*").get("ETag"))
        except FileExistsError:
            return None
        except OSError as exc:  # 409 ConditionalRequestConflict: a concurrent create is in flight
            if "pre-conditions" in str(exc) or "onflict" in str(exc):
                return None
            raise

    def replace(self, key: str, data: bytes, etag: str) -> str | None:
        try:
            return _etag(self._call("put_object", key, Body=data, IfMatch=f'"{etag}"').get("ETag"))
        except (FileNotFoundError, FileExistsError):
            return None
        except OSError as exc:
            if "pre-conditions" in str(exc) or "onflict" in str(exc):
                return None
            raise

    def delete_if(self, key: str, etag: str) -> bool:
        try:
            self._call("delete_object", key, IfMatch=f'"{etag}"')
            return True
        except (FileNotFoundError, OSError) as exc:
            if isinstance(exc, FileNotFoundError) or "pre-conditions" in str(exc) or "onflict" in str(exc):
                return False
            raise

    def head(self, key: str) -> Head | None:
        try:
            answer = self._call("head_object", key)
        except FileNotFoundError:
            return None
        date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        server_now = parsedate_to_datetime(date) if date else datetime.now(timezone.utc)
        return Head(_etag(answer.get("ETag")), (server_now - answer["LastModified"]).total_seconds())

    def list(self, prefix: str) -> dict[str, str]:
        async def go() -> dict[str, str]:
            out: dict[str, str] = {}
            token: str | None = None
            while True:
                extra = {"ContinuationToken": token} if token else {}
                page = await self.fs._call_s3("list_objects_v2", Bucket=self.bucket, Prefix=self.prefix + prefix, **extra)
                for item in page.get("Contents", []):
                    out[item["Key"][len(self.prefix):]] = _etag(item.get("ETag"))
                if not page.get("IsTruncated"):
                    return out
                token = page["NextContinuationToken"]
        return self._sync(go())

    def folders(self, prefix: str) -> list[str]:
        async def go() -> list[str]:
            out: list[str] = []
            token: str | None = None
            while True:
                extra = {"ContinuationToken": token} if token else {}
                page = await self.fs._call_s3("list_objects_v2", Bucket=self.bucket, Prefix=self.prefix + prefix,
                                              Delimiter="/", **extra)
                out.extend(item["Prefix"][len(self.prefix):] for item in page.get("CommonPrefixes", []))
                if not page.get("IsTruncated"):
                    return out
                token = page["NextContinuationToken"]
        return self._sync(go())

    def _bounded(self, coros: list) -> Any:
        async def go() -> list:
            gate = asyncio.Semaphore(PARALLEL_TRANSFERS)

            async def one(coro: Any) -> Any:
                async with gate:
                    return await coro
            return await asyncio.gather(*(one(c) for c in coros))
        return self._sync(go())

    def put_files(self, items: Iterable[tuple[Path, str]]) -> dict[str, str]:
        async def one(local: Path, key: str) -> tuple[str, str]:
            if os.path.getsize(local) < MULTIPART_BYTES:
                answer = await self.fs._call_s3("put_object", Bucket=self.bucket, Key=self.prefix + key,
                                                Body=Path(local).read_bytes())
                return key, _etag(answer.get("ETag"))
            # Multipart (parts of MULTIPART_BYTES / 4): the object appears when the upload completes, whole.
            await self.fs._put_file(str(local), self.path(key), chunksize=MULTIPART_BYTES // 4)
            answer = await self.fs._call_s3("head_object", Bucket=self.bucket, Key=self.prefix + key)
            return key, _etag(answer.get("ETag"))
        return dict(self._bounded([one(local, key) for local, key in items]))

    def get_files(self, items: Iterable[tuple[str, Path]]) -> None:
        async def one(key: str, local: Path) -> None:
            await self.fs._get_file(self.path(key), str(local))
        self._bounded([one(key, local) for key, local in items])

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self.prefix + k} for k in keys[start:start + 1000]]
            self._sync(self.fs._call_s3("delete_objects", Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}))


class FsspecStore(ObjectStore):
    """Any other fsspec file system; ETags are MD5s of the content, conditions hold within this process."""

    _guard = threading.Lock()

    def _md5(self, key: str) -> str:
        return hashlib.md5(self.fs.cat_file(self.path(key))).hexdigest()

    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            return None
        return data, hashlib.md5(data).hexdigest()

    def read_tail(self, key: str, size: int, length: int) -> bytes:
        return self.fs.cat_file(self.path(key), start=max(0, size - length), end=size)

    def put(self, key: str, data: bytes) -> str:
        self.fs.pipe_file(self.path(key), data)
        return hashlib.md5(data).hexdigest()

    def create(self, key: str, data: bytes) -> str | None:
        with self._guard:
            return None if self.fs.exists(self.path(key)) else self.put(key, data)

    def replace(self, key: str, data: bytes, etag: str) -> str | None:
        with self._guard:
            current = self.read(key)
            return self.put(key, data) if current is not None and current[1] == etag else None

    def delete_if(self, key: str, etag: str) -> bool:
        with self._guard:
            current = self.read(key)
            if current is None or current[1] != etag:
                return False
            self.fs.rm_file(self.path(key))
            return True

    def head(self, key: str) -> Head | None:
        try:
            info = self.fs.info(self.path(key))
        except FileNotFoundError:
            return None
        created = info.get("created") or info.get("LastModified") or info.get("updated")
        if isinstance(created, (int, float)):
            age = datetime.now(timezone.utc).timestamp() - created
        elif isinstance(created, datetime):
            age = (datetime.now(timezone.utc) - created.astimezone(timezone.utc)).total_seconds()
        else:
            age = 0.0
        return Head(self._md5(key), age)

    def list(self, prefix: str) -> dict[str, str]:
        folder = self.path(prefix.rsplit("/", 1)[0]) if "/" in prefix else self.root
        try:
            found = self.fs.find(folder)
        except FileNotFoundError:
            return {}
        root = self.root.strip("/") + "/"
        keys = [p.lstrip("/")[len(root):] for p in found if p.lstrip("/").startswith(root)]
        return {key: self._md5(key) for key in keys if key.startswith(prefix)}

    def folders(self, prefix: str) -> list[str]:
        parent, _, start = prefix.rpartition("/")
        try:
            found = self.fs.ls(self.path(parent) if parent else self.root, detail=True)
        except FileNotFoundError:
            return []
        names = [entry["name"].rstrip("/").rsplit("/", 1)[-1] for entry in found if entry.get("type") == "directory"]
        return sorted(f"{parent}/{name}/" if parent else f"{name}/" for name in names if name.startswith(start))

    def put_files(self, items: Iterable[tuple[Path, str]]) -> dict[str, str]:
        return {key: self.put(key, Path(local).read_bytes()) for local, key in items}

    def get_files(self, items: Iterable[tuple[str, Path]]) -> None:
        for key, local in items:
            Path(local).write_bytes(self.fs.cat_file(self.path(key)))

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.fs.rm_file(self.path(key))
            except FileNotFoundError:
                pass
