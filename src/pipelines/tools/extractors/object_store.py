"""Files on S3 and S3-compatible stores (MinIO, Ceph, R2...) for the file extractor.

``s3://bucket/orders/{start_date}/*.parquet`` is listed and read with pyarrow's S3 filesystem
(the Python path, in bounded batches) or handed to ClickHouse's ``s3()`` table function (push-down),
with the endpoint, region and credentials taken from the environment (or ``.env``) when the run
starts: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, or the
variables the extractor's ``key_env=`` / ``secret_env=`` name. No credential is ever part of a
query text: the push-down passes them as query parameters, and every log line masks them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from core.exceptions import ExtractError
from core.validators import quote_identifier
from pipelines.interfaces import RunContext

SCHEME = "s3://"
_GLOB = re.compile(r"[*?\[]")
_CONNECT_TIMEOUT, _REQUEST_TIMEOUT, _ATTEMPTS = 5.0, 60.0, 3
_SCHEMA_THREADS = 8  # Parquet footers are read in parallel (more was slower on 2 cores)
_SCHEMA_BATCH = 256  # footers in flight at once: the schemas held stay bounded whatever the glob matches
_REFUSED = ("ACCESS_DENIED", "SIGNATURE_DOES_NOT_MATCH", "INVALID_ACCESS_KEY_ID", "InvalidAccessKeyId",
            "EXPIRED_TOKEN", "AccessDenied", "HTTP response code: 403")
_UNREACHABLE = ("NETWORK_CONNECTION", "curlCode", "Could not connect", "Connection refused", "timed out")


def is_s3(path: str) -> bool:
    """True for an ``s3://bucket/key`` location."""
    return path.lower().startswith(SCHEME)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A key glob as a regex, with Python's ``glob`` meaning: ``*`` and ``?`` stay within one
    ``/`` segment, ``**/`` spans any number of them, ``[...]`` is a character class."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True)
class S3Object:
    """One object of a bucket, standing where the file extractor has a local ``Path``."""

    bucket: S3Bucket = field(repr=False)
    key: str  # "bucket/path/to/object"
    size: int = -1  # bytes, as listed

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.key).suffix

    def __str__(self) -> str:
        return SCHEME + self.key

    def open_input_file(self) -> pa.NativeFile:
        """Random access (Parquet reads its footer, then the row groups it needs)."""
        with self.bucket.errors(str(self)):
            return self.bucket.filesystem.open_input_file(self.key)

    def open_input_stream(self) -> pa.NativeFile:
        """A sequential stream (CSV, JSON)."""
        with self.bucket.errors(str(self)):
            return self.bucket.filesystem.open_input_stream(self.key, compression=None)  # ours, by suffix


@dataclass
class S3Bucket:
    """How one run reaches the objects: endpoint, region and credentials, read from the settings
    (environment first, then ``.env``) by :meth:`connect`."""

    extractor: str
    endpoint: str | None = None
    region: str | None = None
    key_env: str = "AWS_ACCESS_KEY_ID"
    secret_env: str = "AWS_SECRET_ACCESS_KEY"
    token_env: str = "AWS_SESSION_TOKEN"
    # What this run uses (the configured endpoint and region, else the settings'):
    _endpoint: str | None = None
    _region: str = "us-east-1"
    _credentials: tuple[str | None, str | None, str | None] = (None, None, None)
    _filesystem: pafs.S3FileSystem | None = None

    def connect(self, context: RunContext) -> S3Bucket:
        """Read the endpoint, region and credentials for this run (masked in every log line from now)."""
        extra = context.settings.extra
        endpoint = self.endpoint or extra("AWS_ENDPOINT_URL_S3") or extra("AWS_ENDPOINT_URL")
        region = self.region or extra("AWS_REGION") or extra("AWS_DEFAULT_REGION") or "us-east-1"
        credentials = (extra(self.key_env), extra(self.secret_env), extra(self.token_env))
        if bool(credentials[0]) != bool(credentials[1]):
            missing = self.secret_env if credentials[0] else self.key_env
            raise ExtractError(f"{self.extractor}: {missing} is not set (S3 needs both {self.key_env} and "
                               f"{self.secret_env}, or neither for a public bucket)")
        context.add_secrets(c for c in credentials if c)
        if (endpoint, region, credentials) != (self._endpoint, self._region, self._credentials):
            self._filesystem = None
        self._endpoint, self._region, self._credentials = endpoint, region, credentials
        return self

    @property
    def filesystem(self) -> pafs.S3FileSystem:
        if self._filesystem is None:
            key, secret, token = self._credentials
            self._filesystem = pafs.S3FileSystem(
                access_key=key, secret_key=secret, session_token=token, anonymous=not key,
                region=self._region, endpoint_override=self._endpoint, connect_timeout=_CONNECT_TIMEOUT,
                request_timeout=_REQUEST_TIMEOUT, retry_strategy=pafs.AwsStandardS3RetryStrategy(_ATTEMPTS))
        return self._filesystem

    def where(self) -> str:
        return f"endpoint {self._endpoint}" if self._endpoint else f"AWS region {self._region}"

    @property
    def address(self) -> str:
        """Where a reader connects (a ClickHouse server too, when it reads the bucket itself)."""
        return self._endpoint or f"https://s3.{self._region}.amazonaws.com"

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """pyarrow's S3 errors as one line naming the object and the likely cause."""
        try:
            yield
        except OSError as exc:
            text = " ".join(str(exc).split())
            if any(marker in text for marker in _REFUSED):
                cause = (f"S3 refused the credentials ({self.key_env} / {self.secret_env}) or they may not "
                         "read it")
            elif any(marker in text for marker in _UNREACHABLE):
                cause = f"cannot reach the S3 {self.where()}"
            elif "NO_SUCH_BUCKET" in text or "NoSuchBucket" in text:
                cause = "the bucket does not exist"
            else:
                cause = "cannot read it"
            detail = text.split(": ", 1)[-1][:300]
            raise ExtractError(f"{self.extractor}: {what}: {cause} ({detail})", path=what) from None

    def objects(self, location: str) -> list[S3Object]:
        """The objects ``s3://bucket/key-or-glob`` names, sorted by key."""
        key = location[len(SCHEME):]
        with self.errors(location):
            if not _GLOB.search(key):
                info = self.filesystem.get_file_info(key)
                return [S3Object(self, key, info.size)] if info.type == pafs.FileType.File else []
            fixed = key[:_GLOB.search(key).start()]  # type: ignore[union-attr]
            base = fixed.rsplit("/", 1)[0]
            if "/" not in base:  # the bucket itself: list it all
                base = fixed.split("/", 1)[0]
            infos = self.filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        pattern = _glob_regex(key)
        return sorted((S3Object(self, i.path, i.size) for i in infos
                       if i.type == pafs.FileType.File and pattern.match(i.path)), key=lambda o: o.key)

    def schemas(self, objects: list[S3Object]) -> Iterator[pa.Schema]:
        """The declared Parquet schema of each object, in order; stop iterating to stop reading.

        One ranged GET per object (the footer, and a second read only for a footer over 64 KiB):
        the listed size spares the HEAD request a plain ``open_input_file`` makes, which was half
        the requests. Footers are read ``_SCHEMA_THREADS`` at a time, ``_SCHEMA_BATCH`` per round."""
        parquet = ds.ParquetFileFormat()

        def read(obj: S3Object) -> pa.Schema:
            with self.errors(str(obj)):
                return parquet.make_fragment(obj.key, self.filesystem,
                                             file_size=obj.size if obj.size >= 0 else None).physical_schema

        with ThreadPoolExecutor(min(_SCHEMA_THREADS, len(objects) or 1)) as pool:
            for start in range(0, len(objects), _SCHEMA_BATCH):
                yield from pool.map(read, objects[start:start + _SCHEMA_BATCH])

    def http_url(self, key: str) -> str:
        """The object's URL as ClickHouse's ``s3()`` takes it (path style on a custom endpoint)."""
        if self._endpoint:
            return f"{self._endpoint.rstrip('/')}/{key}"
        bucket, _, path = key.partition("/")
        return f"https://{bucket}.s3.{self._region}.amazonaws.com/{path}"

    def table_function(self, objects: list[S3Object], format: str, structure: str | None = None,
                       ) -> tuple[str, dict[str, Any]]:
        """``s3(...)`` reading exactly these objects, and its query parameters (URL and credentials
        are parameters, so no credential is in the query text); ``structure``: ClickHouse's column
        list, e.g. ``c0 String, c1 String`` (passed as a query parameter, like the URL).

        Several objects are one glob over their common folder (``folder/**``: one LIST, which gives
        ClickHouse every size) kept to exactly these keys by a filter on ``_path``, which ClickHouse
        applies to the listing before reading any object. Naming the keys (``{a,b,...}``) or a plain
        ``_path IN (...)`` (turned into the list of keys) makes it send a HEAD per object first: 365
        more requests for a year of daily files, hence ``concat(_path, '')``; ``IN`` is a hash
        lookup per row where ``has(keys, _path)`` compared each row with every key (3x slower).
        Several objects need ``structure`` (:meth:`structure`): the glob's listing may hold
        objects ClickHouse would otherwise infer the schema from."""
        key, secret, token = self._credentials
        parameters: dict[str, Any] = {}
        if key:
            parameters.update(dp_s3_key=key, dp_s3_secret=secret)
            auth = ", {dp_s3_key:String}, {dp_s3_secret:String}"
            if token:
                parameters["dp_s3_token"] = token
                auth += ", {dp_s3_token:String}"
        else:
            auth = ", NOSIGN"
        tail = ", {dp_s3_structure:String}" if structure else ""
        if structure:
            parameters["dp_s3_structure"] = structure
        if len(objects) == 1:
            parameters["dp_s3_url"] = self.http_url(objects[0].key)
            return f"s3({{dp_s3_url:String}}{auth}, '{format}'{tail})", parameters
        if not structure:
            raise ValueError("several objects in one s3() need their structure")
        keys = [o.key for o in objects]
        prefix = _common_prefix(keys)
        parameters.update(dp_s3_url=self.http_url(prefix[:prefix.rfind("/") + 1] + "**"), dp_s3_paths=keys)
        return (f"(SELECT *, _path, _row_number FROM s3({{dp_s3_url:String}}{auth}, '{format}'{tail}) "
                "WHERE concat(_path, '') IN {dp_s3_paths:Array(String)})"), parameters


    def structure(self, context: RunContext, obj: S3Object, format: str) -> str:
        """ClickHouse's own reading of ``obj``'s schema (one checked object), as an ``s3()``
        structure: a glob over the folder would infer it from the first object its listing gives,
        which may be one the framework did not list or check (a ``_SUCCESS`` marker, a manifest)."""
        function, parameters = self.table_function([obj], format)
        rows = context.store.query_rows(f"DESCRIBE {function}", parameters)
        return ", ".join(f"{quote_identifier(row[0])} {row[1]}" for row in rows)


def _common_prefix(keys: list[str]) -> str:
    first, last = min(keys), max(keys)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size]
