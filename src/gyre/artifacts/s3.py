"""S3ArtifactStore: blobs and manifest fragments in any S3-compatible object store.

Keys under ``s3://bucket/prefix``::

    <prefix>/blobs/ab/cd/abcd...                       one object per sha256
    <prefix>/manifests/<scope>/<time_ns>-<uuid>.json   append-only fragments

The endpoint is the setting ``GYRE_S3_ENDPOINT_URL`` (empty: AWS); credentials and region
come from the standard AWS environment variables and config files. This is the only module
that imports boto3, and it is loaded only when an ``s3://`` URI is opened.

    >>> store = S3ArtifactStore("s3://my-bucket/gyre")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO, NoReturn
from urllib.parse import urlsplit

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from gyre import config
from gyre.artifacts import _manifest
from gyre.artifacts._paths import validate_digest, validate_scope
from gyre.artifacts._protocol import BlobRef
from gyre.artifacts._verify import open_verified, spooled
from gyre.errors import (
    BackendUnavailable,
    Forbidden,
    GyreError,
    InvalidArgument,
    NotFound,
)

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client

__all__ = ["S3ArtifactStore"]

_MiB = 1024 * 1024
# Errors that mean "could not talk to the endpoint" rather than "the endpoint said no".
_NETWORK_ERRORS = (BotoConnectionError, HTTPClientError, IncompleteReadError)
_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError)
_DENIED_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"}
)


class S3ArtifactStore:
    """An ArtifactStore in the bucket and key prefix ``uri`` names (``s3://bucket/prefix``).

    ``max_attempts``: tries per request (botocore's standard retry mode, with back-off).
    Uploads go through a temporary file, then multipart in ``part_size`` pieces, so memory
    stays bounded by about ``max_concurrency * part_size``. Close the store when done.
    """

    def __init__(
        self,
        uri: str,
        *,
        max_attempts: int = 3,
        part_size: int = 8 * _MiB,
        max_concurrency: int = 4,
    ) -> None:
        self.uri = uri
        self.bucket, self.prefix = _parse(uri)
        self.endpoint_url = config.get("GYRE_S3_ENDPOINT_URL") or None
        try:
            session = boto3.session.Session()
            self._client: S3Client = session.client(
                "s3",
                endpoint_url=self.endpoint_url,
                # Signing needs a region even where the store has none (most look-alikes).
                region_name=session.region_name or "us-east-1",
                config=Config(
                    connect_timeout=5,
                    read_timeout=60,
                    retries={"max_attempts": max_attempts, "mode": "standard"},
                    max_pool_connections=max(10, max_concurrency),
                    # Look-alikes on a bare host:port cannot serve bucket.host names.
                    s3={"addressing_style": "path"} if self.endpoint_url else None,
                ),
            )
        # BotoCoreError: a missing profile and the like; ValueError: a malformed endpoint URL.
        except (BotoCoreError, ValueError) as exc:
            raise InvalidArgument(
                f"cannot set up S3 for {uri!r}: {exc}",
                hint="check GYRE_S3_ENDPOINT_URL, AWS_PROFILE and the AWS config files",
            ) from None
        self._transfer = TransferConfig(
            multipart_threshold=part_size,
            multipart_chunksize=part_size,
            max_concurrency=max_concurrency,
        )

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.uri!r})"

    def __enter__(self) -> S3ArtifactStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()

    @property
    def _endpoint(self) -> str:
        return self.endpoint_url or "AWS S3"

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    # -- blobs ---------------------------------------------------------------------------

    def blob_key(self, digest: str) -> str:
        """The object key of the blob ``digest``."""
        validate_digest(digest)
        return self._key("blobs", digest[:2], digest[2:4], digest)

    def put_blob(self, src: BinaryIO) -> BlobRef:
        """Store ``src``'s bytes; identical bytes are uploaded once.

        The bytes are spooled to a temporary file first: the key is their digest, which is
        only known at the end, and a multipart upload needs a source it can re-read."""
        with spooled(src) as (path, ref):
            key = self.blob_key(ref.digest)
            # An object of the wrong size is damaged: let this upload replace it.
            if self._size_of(key) != ref.size:
                with self._translated(f"uploading blob {ref.digest}"):
                    self._client.upload_file(str(path), self.bucket, key, Config=self._transfer)
        return ref

    def open_blob(self, digest: str) -> BinaryIO:
        """The blob as a stream that verifies its sha256 at EOF; NotFound naming it."""
        key = self.blob_key(digest)
        with self._translated(f"reading blob {digest}", missing=f"blob {digest}"):
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        return open_verified(_Body(body, self), digest, f"s3://{self.bucket}/{key}")

    def has_blob(self, digest: str) -> bool:
        return self._size_of(self.blob_key(digest)) is not None

    def _size_of(self, key: str) -> int | None:
        try:
            with self._translated(f"looking up {key!r}"):
                return self._client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except NotFound:
            return None

    # -- manifests -----------------------------------------------------------------------

    def append_manifest(self, scope: str, entries: Mapping[str, BlobRef]) -> None:
        """Record ``entries`` in ``scope`` as one new fragment object (nothing is rewritten)."""
        folder = self._key("manifests", validate_scope(scope))
        checked = _manifest.check_entries(entries)
        if not checked:
            return
        key = f"{folder}/{_manifest.new_fragment_name()}"
        with self._translated(f"writing manifest {scope!r}"):
            self._client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=_manifest.encode(checked),
                ContentType="application/json",
            )

    def read_manifest(self, scope: str) -> dict[str, BlobRef]:
        """The merged manifest of ``scope``; empty if nothing was recorded."""
        folder = self._key("manifests", validate_scope(scope)) + "/"
        names: list[str] = []
        with self._translated(f"listing manifest {scope!r}"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=folder, Delimiter="/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"][len(folder) :]
                    if _manifest.FRAGMENT_NAME.fullmatch(name):
                        names.append(name)
        return _manifest.merge(self._fragment(folder + name) for name in sorted(names))

    def _fragment(self, key: str) -> dict[str, BlobRef]:
        with self._translated(f"reading manifest fragment {key!r}"):
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                data = body.read()
            finally:
                body.close()
        return _manifest.decode(data, f"s3://{self.bucket}/{key}")

    # -- errors --------------------------------------------------------------------------

    @contextmanager
    def _translated(self, action: str, *, missing: str | None = None) -> Iterator[None]:
        """botocore's exceptions, as gyre's; ``missing`` names what a 404 means is absent."""
        try:
            yield
        except S3UploadFailedError as exc:
            # boto3 wraps the ClientError in text; the original is still the context.
            cause = exc.__context__
            if isinstance(cause, ClientError):
                self._raise_client_error(cause, action, missing)
            raise GyreError(f"S3 upload failed while {action} in {self.uri!r}: {exc}") from None
        except ClientError as exc:
            self._raise_client_error(exc, action, missing)
        except _NETWORK_ERRORS as exc:
            raise self._unreachable(action, exc) from None
        except _CREDENTIAL_ERRORS as exc:
            raise InvalidArgument(
                f"no usable AWS credentials for {self.uri!r}: {exc}",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
            ) from None

    def _unreachable(self, action: str, exc: Exception) -> BackendUnavailable:
        return BackendUnavailable(
            f"S3 endpoint {self._endpoint!r} is unreachable while {action}: {exc}",
            hint="check that the server is up and GYRE_S3_ENDPOINT_URL names it",
        )

    def _raise_client_error(self, exc: ClientError, action: str, missing: str | None) -> NoReturn:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        text = f"{code}: {error.get('Message', '')}".strip(": ")
        if code == "NoSuchBucket":
            raise NotFound(
                f"bucket {self.bucket!r} of artifact URI {self.uri!r} does not exist "
                f"at {self._endpoint!r}",
                hint=f"create it (aws s3 mb s3://{self.bucket}) or fix GYRE_ARTIFACT_URI",
            ) from None
        if code == "InvalidBucketName":
            raise InvalidArgument(
                f"{self.bucket!r} in artifact URI {self.uri!r} is not a valid bucket name",
                hint="bucket names are 3-63 lowercase letters, digits, dots and hyphens",
            ) from None
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            raise NotFound(
                f"{missing or action} is not in the artifact store {self.uri!r}",
                hint="check the digest, or that this is the store it was uploaded to",
            ) from None
        if code in _DENIED_CODES or status == 403:
            raise Forbidden(
                f"S3 at {self._endpoint!r} refused {action} in {self.uri!r} ({text})",
                hint="check the AWS credentials and the bucket policy",
            ) from None
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "RequestTimeout"):
            raise BackendUnavailable(
                f"S3 at {self._endpoint!r} failed while {action} in {self.uri!r} ({text})",
                hint="the store is overloaded or failing; try again later",
            ) from None
        raise GyreError(f"S3 at {self._endpoint!r} refused {action} in {self.uri!r} ({text})")


class _Body:
    """A GetObject body whose network failures surface as BackendUnavailable."""

    def __init__(self, body: StreamingBody, store: S3ArtifactStore) -> None:
        self._body = body
        self._store = store

    def read(self, size: int, /) -> bytes:
        try:
            return self._body.read(size)
        except _NETWORK_ERRORS as exc:
            raise self._store._unreachable("reading a blob", exc) from None

    def close(self) -> None:
        self._body.close()


def _parse(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``; InvalidArgument naming a bad URI."""
    parts = urlsplit(uri)
    hint = "use s3://bucket or s3://bucket/prefix"
    if parts.scheme.lower() != "s3" or not parts.netloc:
        raise InvalidArgument(f"artifact URI {uri!r} names no S3 bucket", hint=hint)
    if parts.query or parts.fragment:
        raise InvalidArgument(f"artifact URI {uri!r} has a query or fragment", hint=hint)
    components = [c for c in parts.path.split("/") if c]
    if any(c in (".", "..") for c in components) or "\\" in parts.path:
        raise InvalidArgument(
            f"artifact URI {uri!r} has '.', '..' or '\\' in its prefix", hint=hint
        )
    return parts.netloc, "/".join(components)
