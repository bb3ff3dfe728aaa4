"""The data lake: datasets and artifacts on a local folder or on S3, behind one small API.

    lake = Lake.from_settings(settings)            # settings.lake: a folder or s3://bucket/prefix
    uri = lake.write_table(df, "fleet/h1.parquet")  # atomic; refuses to replace different content
    df = lake.read_table(uri)

Guarantees, on both backends:
* atomic writes: a reader sees the old object or the complete new one, never a partial file
  (local: write to a temporary file then link/rename it into place; S3: a PUT is atomic);
* no silent overwrite: writing a key that holds different bytes raises FileExistsError unless
  `overwrite=True`; writing identical bytes is a no-op (so reruns are idempotent). On S3 the
  create-if-absent is a conditional PUT (`If-None-Match: *`), so two writers cannot both win;
* transient S3 errors (throttling, 5xx, connection resets) are retried by botocore's "standard"
  retry mode with backoff;
* credentials come from the environment or an AWS profile (boto3's chain), never from code, and
  are never part of a message or a log line.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import pandas as pd

    from flows.settings import Settings

S3_MAX_ATTEMPTS = 8  # first try + retries, with botocore's exponential backoff and jitter


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> "S3Location":
        rest = uri[len("s3://"):]
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise ValueError(f"{uri!r} is not an S3 URI; expected s3://bucket/key")
        return cls(bucket, key)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


class Lake:
    """A lake rooted at a local folder or an `s3://bucket/prefix`.

    Keys are relative to the root; read-side methods take full URIs (a local path or an s3://
    URI, inside the lake or not) so that locations from the catalog can be read as they are.
    S3 is reached through one lazily built boto3 client; the lake pickles without it (worker
    processes rebuild their own).
    """

    def __init__(self, root: str | Path, *, endpoint_url: str | None = None, region: str | None = None,
                 profile: str | None = None, max_attempts: int = S3_MAX_ATTEMPTS):
        self.root = str(root).rstrip("/") if is_s3(str(root)) else str(Path(root).expanduser().resolve())
        self.endpoint_url, self.region, self.profile = endpoint_url, region, profile
        self.max_attempts = max_attempts
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Lake":
        s = settings.storage
        return cls(settings.lake, endpoint_url=s.s3_endpoint_url, region=s.s3_region, profile=s.aws_profile)

    def __repr__(self) -> str:  # never shows credentials: it has none to show
        endpoint = f", endpoint={self.endpoint_url}" if self.endpoint_url else ""
        return f"Lake({self.root!r}{endpoint})"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None}

    # ---- locations ----------------------------------------------------------------------------
    @property
    def is_s3(self) -> bool:
        return is_s3(self.root)

    def uri_for(self, key: str) -> str:
        """Full URI of a key (a full URI or absolute path is returned as it is)."""
        key = str(key)
        if is_s3(key) or Path(key).is_absolute():
            return key
        key = key.lstrip("/")
        return f"{self.root}/{key}" if self.is_s3 else str(Path(self.root) / key)

    def contains(self, uri: str) -> bool:
        """Whether a URI lies inside this lake's root."""
        uri = str(uri)
        if self.is_s3 != is_s3(uri):
            return False
        if self.is_s3:
            return uri.rstrip("/") == self.root or uri.startswith(self.root + "/")
        path, root = Path(uri).expanduser().resolve(), Path(self.root)
        return path == root or root in path.parents

    # ---- bytes --------------------------------------------------------------------------------
    def write_bytes(self, key: str, data: bytes, overwrite: bool = False) -> str:
        """Write atomically; return the URI. Different existing bytes raise FileExistsError unless
        `overwrite=True`; identical bytes are left untouched."""
        uri = self.uri_for(key)
        if is_s3(uri):
            self._s3_put(S3Location.parse(uri), bytes(data), overwrite)
        else:
            _local_put(Path(uri), bytes(data), overwrite)
        return uri

    def read_bytes(self, uri: str) -> bytes:
        """Bytes at a URI or key. A missing object raises FileNotFoundError naming it."""
        uri = self.uri_for(uri)
        if not is_s3(uri):
            return Path(uri).read_bytes()
        loc = S3Location.parse(uri)
        try:
            return self.client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
        except Exception as exc:
            raise _s3_error(exc, uri) from exc

    def exists(self, uri: str) -> bool:
        uri = self.uri_for(uri)
        if not is_s3(uri):
            return Path(uri).is_file()
        loc = S3Location.parse(uri)
        try:
            self.client.head_object(Bucket=loc.bucket, Key=loc.key)
            return True
        except Exception as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise _s3_error(exc, uri) from exc

    def list(self, prefix: str = "") -> list[str]:
        """URIs of the objects under a folder (recursive, sorted); `prefix` is a key or URI of a
        folder, so "runs/1" lists "runs/1/..." but not "runs/10/..." on both backends."""
        base = (self.uri_for(prefix) if prefix else self.root).rstrip("/")
        if not is_s3(base):
            path = Path(base)
            return sorted(str(p) for p in path.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))
        return sorted(self._s3_list(S3Location.parse(base + "/")))

    # ---- tables -------------------------------------------------------------------------------
    def write_table(self, df: "pd.DataFrame", key: str, overwrite: bool = False) -> str:
        """A DataFrame as parquet (CSV when the key ends in .csv), written like `write_bytes`."""
        return self.write_bytes(key, table_bytes(df, key), overwrite=overwrite)

    def read_table(self, uri: str) -> "pd.DataFrame":
        """A parquet or CSV file (by extension) as a DataFrame."""
        import pandas as pd

        data = self.read_bytes(uri)
        if str(uri).lower().endswith((".csv", ".tsv", ".txt")):
            return pd.read_csv(io.BytesIO(data), sep="\t" if str(uri).lower().endswith(".tsv") else ",")
        return pd.read_parquet(io.BytesIO(data))

    # ---- S3 -----------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The boto3 S3 client: credentials from the environment or the profile, retries on."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
            config = Config(retries={"mode": "standard", "max_attempts": self.max_attempts},
                            connect_timeout=10, read_timeout=60, s3={"addressing_style": "path"})
            self._client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
        return self._client

    def _s3_put(self, loc: S3Location, data: bytes, overwrite: bool) -> None:
        if overwrite:
            try:
                self.client.put_object(Bucket=loc.bucket, Key=loc.key, Body=data)
            except Exception as exc:
                raise _s3_error(exc, loc.uri) from exc
            return
        try:  # create only if absent: the server decides, so concurrent writers cannot both win
            self.client.put_object(Bucket=loc.bucket, Key=loc.key, Body=data, IfNoneMatch="*")
        except Exception as exc:
            if _error_code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise _s3_error(exc, loc.uri) from exc
            if self.read_bytes(loc.uri) != data:
                raise _exists_error(loc.uri) from None

    def _s3_list(self, loc: S3Location) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=loc.bucket, Prefix=loc.key):
                for obj in page.get("Contents", []):
                    yield f"s3://{loc.bucket}/{obj['Key']}"
        except Exception as exc:
            raise _s3_error(exc, loc.uri) from exc

    def ensure_bucket(self) -> None:
        """Create the root's bucket if it does not exist (local stack and tests)."""
        if not self.is_s3:
            Path(self.root).mkdir(parents=True, exist_ok=True)
            return
        bucket = S3Location.parse(self.root + "/").bucket
        try:
            self.client.head_bucket(Bucket=bucket)
        except Exception as exc:
            if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise _s3_error(exc, f"s3://{bucket}") from exc
            self.client.create_bucket(Bucket=bucket)


def table_bytes(df: "pd.DataFrame", key: str) -> bytes:
    """Serialise a DataFrame as the key's format: CSV for .csv, else parquet (no index)."""
    if str(key).lower().endswith(".csv"):
        return df.to_csv(index=False).encode("utf-8")
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _local_put(path: Path, data: bytes, overwrite: bool) -> None:
    """Write to a temporary file in the same folder, fsync it, then put it in place atomically:
    `os.replace` when overwriting, else `os.link`, which fails if the name exists (no race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            if path.read_bytes() != data:
                raise _exists_error(str(path)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _exists_error(uri: str) -> FileExistsError:
    return FileExistsError(f"{uri} already exists with different content; nothing was overwritten. "
                           "Write under a new key (e.g. a new version) or pass overwrite=True.")


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def _s3_error(exc: Exception, uri: str) -> Exception:
    """A botocore error as an error that names the object and the fix (and no secret)."""
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    code = _error_code(exc)
    if code in ("NoSuchKey", "404", "NotFound"):
        return FileNotFoundError(f"{uri} does not exist")
    if code == "NoSuchBucket":
        return FileNotFoundError(f"{uri}: bucket does not exist; create it or fix storage.lake")
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
        return PermissionError(f"{uri}: access denied ({code}); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                               "or storage.aws_profile, and the bucket policy")
    if isinstance(exc, NoCredentialsError):
        return PermissionError(f"{uri}: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                               "or storage.aws_profile (HYPERNET_STORAGE__AWS_PROFILE)")
    if isinstance(exc, EndpointConnectionError):
        return ConnectionError(f"{uri}: cannot reach the S3 endpoint ({exc}); check storage.s3_endpoint_url")
    return OSError(f"{uri}: S3 request failed ({type(exc).__name__}: {code or exc})")
