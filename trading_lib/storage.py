"""One storage layer for local folders and s3://, through fsspec.

Writes are atomic and idempotent:
- local: the bytes go to a hidden temporary file in the target folder, then ``os.replace`` (a
  reader sees the old file or the new one, never half of one);
- S3: one PUT of the whole object (S3 never exposes a partial object).
Parquet is serialised in memory with fixed settings, so the same frame always gives the same bytes
and a retried or cleared task rewrites an identical file rather than a different or second one.

The DAG side may hand in the filesystem of an Airflow ``ObjectStoragePath`` (credentials from an
Airflow connection); without one, s3fs reads the usual AWS_* environment (the Kubernetes pod path).
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterable
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trading_lib.errors import BadInputError, TransientError

PARQUET_COMPRESSION = "snappy"
# Timestamp granularity allowed for a folder's modification time (folder_version): 2 s covers the
# coarsest filesystems in use (FAT's 2 s; ext3, HFS+ and many network filesystems' 1 s).
RACY_SECONDS = 2


class StorageError(TransientError):
    """Reading or writing the data root failed; the message names the location. Retried."""


class MissingInputError(StorageError, BadInputError):
    """An expected file does not exist. Bad input: never retried (BadInputError wins)."""


class CorruptInputError(StorageError, BadInputError):
    """A file exists but cannot be read as what it should be. Bad input: never retried."""


class AccessDeniedError(StorageError, BadInputError):
    """The store refused the credentials (a wrong key, a missing permission): configuration to
    fix, not an outage to wait out. Never retried; the message names the store and its reason."""


class Storage:
    """Keys are '/'-separated paths relative to ``root`` (a local folder or s3://bucket/prefix)."""

    def __init__(self, root: str, fs: fsspec.AbstractFileSystem | None = None, **storage_options: Any):
        self.root = root.rstrip("/") or "/"
        self.is_s3 = self.root.startswith("s3://")
        if fs is None:
            fs, _ = fsspec.core.url_to_fs(self.root, **storage_options)
        self.fs = fs
        self._base = self.root.removeprefix("s3://") if self.is_s3 else os.path.abspath(self.root)

    def child(self, prefix: str) -> Storage:
        """A Storage rooted at ``prefix`` below this one, sharing the filesystem (and credentials)."""
        base = self.path(prefix)
        return Storage(f"s3://{base}" if self.is_s3 else base, fs=self.fs)

    def __repr__(self) -> str:
        return f"Storage({self.root!r})"

    # -- locations -----------------------------------------------------------------------------
    def path(self, key: str, *, allow_root: bool = False) -> str:
        """The filesystem path of ``key`` (bucket/prefix/key on S3, an absolute path locally).
        ``allow_root``: an empty key names the root itself (for listing)."""
        key = key.strip("/")
        if not key and allow_root:
            return self._base
        if not key or ".." in key.split("/"):
            raise StorageError(f"invalid storage key {key!r}")
        return f"{self._base}/{key}"

    def url(self, key: str = "") -> str:
        path = self.path(key, allow_root=True)
        return f"s3://{path}" if self.is_s3 else path

    def key_of(self, location: str) -> str:
        """The key of a full location below the root (an s3:// URI, a file:// URI or a path)."""
        path = location.removeprefix("s3://").removeprefix("file://")
        if not self.is_s3:
            path = os.path.abspath(path)
        if not path.startswith(self._base + "/"):
            raise StorageError(f"{location} is not below {self.root}")
        return path[len(self._base) + 1 :]

    def delta_location(self, key: str) -> tuple[str, dict[str, str]]:
        """(table URI, storage options) for delta-rs, which has its own object store client: the
        endpoint, region and credentials of this storage's filesystem (an Airflow connection's
        when the DAG side handed one in), else delta-rs reads the usual AWS_* environment."""
        path = self.path(key)
        if not self.is_s3:
            return path, {}
        return f"s3://{path}", _delta_s3_options(self.fs)

    def exists(self, key: str) -> bool:
        return self._call(key, "check", lambda p: self._fresh(p) and self.fs.exists(p))

    def list_keys(self, prefix: str, suffix: str = "") -> list[str]:
        """Keys below ``prefix`` ending in ``suffix``, sorted; [] when the prefix does not exist."""
        base = self.path(prefix, allow_root=True)

        def find(p: str) -> list[str]:
            try:
                return self.fs.find(p)
            except FileNotFoundError:
                return []

        found = self._call(prefix, "list", lambda _: find(base), allow_root=True)
        keys = []
        for full in found:
            full = full.removeprefix("s3://")
            rel = full[len(self._base) + 1 :] if full.startswith(self._base + "/") else None
            name = full.rsplit("/", 1)[-1]
            if rel and rel.endswith(suffix) and not name.startswith("."):
                keys.append(rel)
        return sorted(keys)

    def list_entries(self, prefix: str) -> dict[str, tuple[int, float]]:
        """The files directly below ``prefix`` as {name: (size, modification time)}; {} when absent.
        One directory scan locally, one listing on S3: cheap enough to fingerprint a folder."""
        base = self.path(prefix, allow_root=True)
        if not self.is_s3:
            try:
                with os.scandir(base) as entries:
                    return {
                        e.name: (st.st_size, st.st_mtime)
                        for e in entries
                        if not e.name.startswith(".") and e.is_file() and (st := e.stat())
                    }
            except FileNotFoundError:
                return {}
            except OSError as exc:
                raise StorageError(f"cannot list {self.url(prefix)}: {exc}") from exc

        out = {}
        for info in self._s3_ls(prefix):
            name = info["name"].rstrip("/").rsplit("/", 1)[-1]
            if info.get("type") == "file" and not name.startswith("."):
                modified = info.get("LastModified") or info.get("mtime") or 0
                seconds = modified.timestamp() if hasattr(modified, "timestamp") else float(modified)
                out[name] = (int(info.get("size") or 0), seconds)
        return out

    def folder_version(self, prefix: str) -> tuple[str, list[str]]:
        """(a token that changes whenever a file below ``prefix`` is added, replaced or removed,
        the names of its files), for caches of what the folder holds.

        Locally the folder's own modification time and file count: every write here is a rename
        into the folder, which updates it, and it costs one stat, not one per file. A timestamp
        has a granularity (a tick; seconds on coarse filesystems): a rewrite within the tick of
        the last one leaves it unchanged. So, as git does with its "racily clean" index entries,
        a folder modified less than RACY_SECONDS ago gets a token that never matches again (a
        cache built from it is rebuilt next time); once it is older, any later write lands in a
        later tick and changes the token.

        On S3 a digest of the listing's names, sizes and ETags (one LIST): an ETag is a digest of
        the object's content, so a same-size rewrite within one second of LastModified is seen."""
        import hashlib
        import time

        if not self.is_s3:
            base = self.path(prefix, allow_root=True)
            try:
                before = os.stat(base).st_mtime_ns
                names = sorted(n for n in os.listdir(base) if not n.startswith("."))
            except FileNotFoundError:
                return "absent", []
            except OSError as exc:
                raise StorageError(f"cannot list {self.url(prefix)}: {exc}") from exc
            if time.time_ns() - before < RACY_SECONDS * 1e9:
                return f"racy:{uuid.uuid4().hex}", names
            return f"mtime:{before}:{len(names)}", names
        entries = sorted(
            (info["name"].rstrip("/").rsplit("/", 1)[-1], int(info.get("size") or 0), str(info.get("ETag")))
            for info in self._s3_ls(prefix)
            if info.get("type") == "file"
        )
        entries = [entry for entry in entries if not entry[0].startswith(".")]
        digest = hashlib.sha256(repr(entries).encode()).hexdigest()
        return f"s3:{digest}", [name for name, _, _ in entries]

    def list_folders(self, prefix: str) -> list[str]:
        """Names of the folders directly below ``prefix``, sorted; [] when absent."""
        base = self.path(prefix, allow_root=True)
        if not self.is_s3:
            try:
                with os.scandir(base) as entries:
                    return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
            except FileNotFoundError:
                return []

        found = self._s3_ls(prefix)
        return sorted(i["name"].rstrip("/").rsplit("/", 1)[-1] for i in found if i.get("type") == "directory")

    def _s3_ls(self, prefix: str) -> list[dict]:
        """One fresh S3 listing of the objects and folders directly below ``prefix`` ([] if absent)."""

        def listing(p: str) -> list[dict]:
            self._fresh(p)
            try:
                return self.fs.ls(p, detail=True)
            except FileNotFoundError:
                return []

        return self._call(prefix, "list", listing, allow_root=True)

    # -- bytes ---------------------------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        return self._call(key, "read", lambda p: self.fs.cat_file(p))

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self.path(key)
        if self.is_s3:
            self._call(key, "write", lambda p: self.fs.pipe_file(p, data))
            return
        folder = os.path.dirname(path)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot write {self.url(key)}: {exc}") from exc
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                # The bytes reach the disk before the rename makes them visible: after a crash
                # the name points at the whole new file or the old one, never at an empty one.
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            _fsync_folder(folder)
        except BaseException as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            if isinstance(exc, PermissionError):
                raise AccessDeniedError(f"cannot write {self.url(key)}: {self._denial(exc)}") from exc
            if isinstance(exc, OSError):
                raise StorageError(f"cannot write {self.url(key)}: {exc}") from exc
            raise

    def delete(self, key: str) -> None:
        if self.exists(key):
            self._call(key, "delete", lambda p: self.fs.rm_file(p))

    # -- parquet -------------------------------------------------------------------------------
    @staticmethod
    def parquet_bytes(frame: pd.DataFrame, metadata: dict[str, str] | None = None) -> bytes:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if metadata:
            merged = dict(table.schema.metadata or {})
            merged.update({k.encode(): str(v).encode() for k, v in metadata.items()})
            table = table.replace_schema_metadata(merged)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression=PARQUET_COMPRESSION)
        return buffer.getvalue()

    def write_parquet(self, key: str, frame: pd.DataFrame, metadata: dict[str, str] | None = None) -> int:
        data = self.parquet_bytes(frame, metadata)
        self.write_bytes(key, data)
        return len(data)

    def read_parquet(
        self,
        key: str,
        columns: list[str] | None = None,
        filters: list[tuple] | None = None,
    ) -> pd.DataFrame:
        """Read one parquet file; ``filters`` are pushed down (only the needed row groups are read)."""
        if not self.exists(key):
            raise MissingInputError(f"{self.url(key)} does not exist")
        try:
            table = pq.read_table(
                self._source(key), columns=columns, filters=filters, filesystem=self._arrow_fs()
            )
        except Exception as exc:  # noqa: BLE001 - sorted by _parquet_error
            raise self._parquet_error(key, exc) from exc
        return table.to_pandas()

    def read_parquet_metadata(self, key: str) -> dict[str, str]:
        """The key-value metadata of a parquet file (bytes keys decoded)."""
        if not self.exists(key):
            raise MissingInputError(f"{self.url(key)} does not exist")
        try:
            schema = pq.read_schema(self._source(key), filesystem=self._arrow_fs())
        except Exception as exc:  # noqa: BLE001 - sorted by _parquet_error
            raise self._parquet_error(key, exc) from exc
        return _key_value_metadata(schema)

    def read_parquet_with_metadata(self, key: str) -> tuple[pd.DataFrame, dict[str, str]]:
        """A parquet file and its key-value metadata from one read (one GET on S3)."""
        data = self.read_bytes(key)
        try:
            table = pq.read_table(pa.BufferReader(data))
        except Exception as exc:  # noqa: BLE001 - sorted by _parquet_error
            raise self._parquet_error(key, exc) from exc
        return table.to_pandas(), _key_value_metadata(table.schema)

    def read_parquet_many(
        self, keys: Iterable[str], columns: list[str] | None = None, filters: list[tuple] | None = None
    ) -> pd.DataFrame:
        """Read many small parquet files of one schema as one frame (one dataset scan)."""
        keys = list(keys)
        if not keys:
            return pd.DataFrame(columns=columns) if columns else pd.DataFrame()
        return self.read_arrow_many(keys, columns, filters).to_pandas()

    def read_arrow_many(
        self, keys: Iterable[str], columns: list[str] | None = None, filters: list[tuple] | None = None
    ) -> pa.Table:
        """:meth:`read_parquet_many` as one Arrow table (no pandas conversion)."""
        keys = list(keys)
        paths = [self._source(k) for k in keys]
        try:
            if self.is_s3:
                # One batch of concurrent GETs on s3fs's event loop: a dataset scan through the
                # fsspec handler opens the files one after the other, a HEAD and a GET each
                # (1,841 result files of a contract-year: 8.6 s that way on SeaweedFS).
                blobs = self.fs.cat(paths, on_error="raise")
                table = pa.concat_tables(
                    [
                        pq.read_table(pa.BufferReader(blobs[p]), columns=columns, filters=filters)
                        for p in paths
                    ]
                )
            else:
                table = pq.ParquetDataset(paths, filters=filters).read(columns=columns)
        except Exception as exc:  # noqa: BLE001 - sorted by _parquet_error
            for key in keys:  # which file: missing, unreachable (retryable) or corrupt
                self.read_parquet_metadata(key)
            raise CorruptInputError(f"cannot read the parquet files under {self.root}: {exc}") from exc
        return table

    # -- json ----------------------------------------------------------------------------------
    def write_json(self, key: str, payload: Any) -> None:
        text = json.dumps(payload, indent=2, sort_keys=True, default=_json_default, allow_nan=False)
        self.write_bytes(key, (text + "\n").encode())

    def read_json(self, key: str) -> Any:
        if not self.exists(key):
            raise MissingInputError(f"{self.url(key)} does not exist")
        try:
            return json.loads(self.read_bytes(key))
        except ValueError as exc:
            raise CorruptInputError(f"{self.url(key)} is not valid JSON: {exc}") from exc

    # -- internals -----------------------------------------------------------------------------
    def _source(self, key: str) -> str:
        path = self.path(key)
        self._fresh(path)
        return path

    def _fresh(self, path: str) -> bool:
        """Forget s3fs's cached listings of ``path`` and its parents: other processes (pods, other
        workers) write and delete objects, and a cached listing would answer exists() or an
        object's size from the past. Local filesystems cache nothing."""
        if self.is_s3:
            self.fs.invalidate_cache(path)
        return True

    def _parquet_error(self, key: str, exc: Exception) -> StorageError:
        """A parquet read failed: the store could not be read (wrapped like any storage call, so an
        outage stays retryable and a denial names its cause), or the bytes are not parquet."""
        # On S3 only pyarrow's parse errors mean bad bytes: s3fs turns a 500, SlowDown or
        # ServiceUnavailable into an OSError and a timeout into TimeoutError, which are outages.
        storage_failure = isinstance(exc, FileNotFoundError | PermissionError) or (
            self.is_s3 and not isinstance(exc, pa.ArrowInvalid)
        )
        if storage_failure:
            # fsspec's isfile() reports an unreachable store as "not found": ask the store again.
            if self.exists(key):
                return StorageError(f"cannot read {self.url(key)}: {exc}")
            return MissingInputError(f"{self.url(key)} does not exist")
        return CorruptInputError(f"{self.url(key)} is not a readable parquet file: {exc}")

    def _arrow_fs(self):
        # Local files go through Arrow's native filesystem (faster); S3 through the fsspec one so
        # that credentials handed in from an Airflow connection are used.
        return None if not self.is_s3 else self.fs

    def _call(self, key: str, action: str, fn, allow_root: bool = False):
        try:
            return fn(self.path(key, allow_root=allow_root))
        except FileNotFoundError as exc:
            raise MissingInputError(f"{self.url(key)} does not exist") from exc
        except StorageError:
            raise
        except PermissionError as exc:
            raise AccessDeniedError(f"cannot {action} {self.url(key)}: {self._denial(exc)}") from exc
        except OSError as exc:
            raise StorageError(f"cannot {action} {self.url(key)}: {exc}") from exc
        except Exception as exc:
            # botocore/aiohttp errors (endpoint unreachable, no credentials, timeouts) are not
            # OSError; they become a StorageError naming the endpoint (retryable in Airflow).
            if not self.is_s3 or not type(exc).__module__.startswith(("botocore", "aiobotocore", "aiohttp")):
                raise
            message = f"cannot {action} {self.url(key)}: S3 endpoint {self.endpoint}: {exc}"
            raise StorageError(message) from exc

    @property
    def endpoint(self) -> str:
        """The S3 endpoint this storage talks to (for error messages)."""
        client = getattr(self.fs, "_s3", None)
        url = getattr(getattr(client, "meta", None), "endpoint_url", None)
        url = url or getattr(self.fs, "endpoint_url", None)
        return url or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"

    def _denial(self, exc: PermissionError) -> str:
        """Why the store refused, with the server's error code. A refused HEAD (exists, size)
        carries no code, only "Forbidden": one listing of the bucket asks the server for it."""
        code, message = _s3_error(exc)
        if self.is_s3 and (code is None or code.isdigit()):
            bucket = self._base.split("/", 1)[0]
            try:
                self.fs.call_s3("list_objects_v2", Bucket=bucket, MaxKeys=1)
            except Exception as probe:  # noqa: BLE001 - only its error code is wanted
                code, message = _s3_error(probe) if _s3_error(probe)[0] else (code, message)
        where = f" by S3 endpoint {self.endpoint}" if self.is_s3 else ""
        reason = f"{code}: {message}" if code and not code.isdigit() else str(exc)
        hint = "; check the access key id and secret" if self.is_s3 else ""
        return f"access denied{where} ({reason}){hint}"


def _fsync_folder(folder: str) -> None:
    """Persist a rename: the folder's entry is data too (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _delta_s3_options(fs: fsspec.AbstractFileSystem) -> dict[str, str]:
    """delta-rs (object_store) options equivalent to an s3fs filesystem's configuration."""
    options: dict[str, str] = {}
    kwargs = dict(getattr(fs, "storage_options", {}) or {})
    client_kwargs = dict(kwargs.get("client_kwargs") or {})
    endpoint = kwargs.get("endpoint_url") or client_kwargs.get("endpoint_url")
    endpoint = endpoint or getattr(fs, "endpoint_url", None)
    region = client_kwargs.get("region_name") or kwargs.get("region_name")
    key, secret, token = getattr(fs, "key", None), getattr(fs, "secret", None), getattr(fs, "token", None)
    if not key and getattr(fs, "session", None) is not None:
        # An Airflow connection's filesystem carries an aiobotocore session, not keys.
        from fsspec.asyn import sync

        credentials = sync(fs.loop, fs.session.get_credentials)
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            if hasattr(frozen, "__await__"):
                frozen = sync(fs.loop, lambda: frozen)
            key, secret, token = frozen.access_key, frozen.secret_key, frozen.token
        region = region or fs.session.get_config_variable("region")
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["aws_endpoint_url"] = endpoint
        if endpoint.startswith("http://"):
            options["aws_allow_http"] = "true"
    if region:
        options["aws_region"] = region
    if key:
        options["aws_access_key_id"] = key
    if secret:
        options["aws_secret_access_key"] = secret
    if token:
        options["aws_session_token"] = token
    return options


def _s3_error(exc: BaseException) -> tuple[str | None, str]:
    """(code, message) of the S3 error behind ``exc`` (s3fs keeps botocore's ClientError as cause)."""
    seen = exc
    while seen is not None:
        error = (getattr(seen, "response", None) or {}).get("Error") or {}
        if error.get("Code"):
            return str(error["Code"]), str(error.get("Message") or seen)
        seen = seen.__cause__
    return None, str(exc)


def _json_default(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _key_value_metadata(schema: pa.Schema) -> dict[str, str]:
    """A parquet schema's key-value metadata, decoded, without pandas' own."""
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items() if not k.startswith(b"pandas")}
