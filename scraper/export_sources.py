"""Where the export reads shards from: a local output folder or a bucket.

Both sources answer the same questions, so the export does not care where
the output lives:

- ``shards()``: every shard of the target with its size now, sorted by name
  (``names()``: the names alone);
- ``chunks(name, size, chunk_bytes)``: the shard's first ``size`` bytes, in
  order, in pieces of at most ``chunk_bytes`` (the export reads each shard
  twice, front to back: to index it, then to copy the kept lines);
- ``lines(name)``: that shard's lines, streamed, each ending in ``\\n`` except
  a last line cut by a killed writer.

Memory stays bounded: a bucket object is read in ``chunk_bytes`` pieces and
never held whole, whatever its size. The size is fixed at listing time: a
local shard still being written is read up to the size it had then (a bucket
object never changes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from scraper.errors import RuntimeFailure, ScraperError, UserError
from scraper.objectstore import SEGMENT_SUFFIX, BucketUrl, S3Options, blocking_client, is_bucket_url

CHUNK_BYTES = 1 << 20


class ShardSource(Protocol):
    def describe(self) -> str: ...

    def shards(self) -> list[tuple[str, int]]: ...

    def names(self) -> list[str]: ...

    def chunks(self, name: str, size: int, chunk_bytes: int) -> Iterator[bytes]: ...

    def lines(self, name: str) -> Iterator[bytes]: ...


class LocalShards:
    """``<output>/<target>/*.jsonl`` on a local or mounted file system."""

    def __init__(self, output_dir: Path, target: str) -> None:
        self.folder = output_dir / target
        self.target = target

    def describe(self) -> str:
        return str(self.folder)

    def shards(self) -> list[tuple[str, int]]:
        if not self.folder.is_dir():
            raise UserError(f"{self.folder}: no output for target {self.target!r} (run `scraper work` first)")
        paths = sorted(self.folder.glob(f"*{SEGMENT_SUFFIX}"))
        return [(path.name, path.stat().st_size) for path in paths]

    def names(self) -> list[str]:
        return [name for name, _ in self.shards()]

    def chunks(self, name: str, size: int, chunk_bytes: int) -> Iterator[bytes]:
        with open(self.folder / name, "rb", buffering=0) as handle:
            while size > 0:
                chunk = handle.read(min(chunk_bytes, size))
                if not chunk:
                    return  # the file shrank under us: nothing more to read
                size -= len(chunk)
                yield chunk

    def lines(self, name: str) -> Iterator[bytes]:
        with open(self.folder / name, "rb") as handle:
            yield from handle


class BucketShards:
    """Every object under ``s3://BUCKET/PREFIX/<target>/`` ending in ``.jsonl``."""

    def __init__(self, location: BucketUrl, target: str, options: S3Options, *, client: Any = None) -> None:
        self.location = location
        self.target = target
        self.prefix = location.target_prefix(target)
        self.client = client if client is not None else blocking_client(options)

    def describe(self) -> str:
        return f"s3://{self.location.bucket}/{self.prefix}"

    def shards(self) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=self.prefix
            )
            for page in pages:
                found.extend(
                    (item["Key"], int(item["Size"]))
                    for item in page.get("Contents", ())
                    if item["Key"].endswith(SEGMENT_SUFFIX)
                )
        except Exception as exc:  # botocore's tree is wide; translated here, once
            raise _translate(exc, self.describe()) from None
        if not found:  # a bucket has no folders: an empty listing is the "no such folder" case
            raise UserError(f"{self.describe()}: no output for target {self.target!r} (no *.jsonl objects here)")
        return sorted(found)

    def names(self) -> list[str]:
        return [name for name, _ in self.shards()]

    def chunks(self, name: str, size: int, chunk_bytes: int) -> Iterator[bytes]:
        if size <= 0:
            return
        try:
            body = self.client.get_object(Bucket=self.location.bucket, Key=name, Range=f"bytes=0-{size - 1}")["Body"]
            try:
                yield from (chunk for chunk in body.iter_chunks(chunk_bytes) if chunk)
            finally:
                body.close()
        except Exception as exc:
            raise _translate(exc, f"s3://{self.location.bucket}/{name}") from None

    def lines(self, name: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.location.bucket, Key=name)["Body"]
            try:
                yield from split_lines(body.iter_chunks(CHUNK_BYTES))
            finally:
                body.close()
        except Exception as exc:
            raise _translate(exc, f"s3://{self.location.bucket}/{name}") from None


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Re-cut a byte stream into lines that keep their ``\\n``; a cut last line is yielded as it is."""
    rest = b""
    for chunk in chunks:
        if not chunk:
            continue
        data = rest + chunk if rest else chunk
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            yield data[start : end + 1]
            start = end + 1
        rest = data[start:]
    if rest:
        yield rest


def open_source(location: str, target: str, options: S3Options | None = None) -> ShardSource:
    """The export's one entry point: ``s3://bucket/prefix`` or a local folder."""
    if is_bucket_url(location):
        return BucketShards(BucketUrl.parse(location), target, options or S3Options())
    return LocalShards(Path(location), target)


def _translate(exc: Exception, where: str) -> Exception:
    from botocore.exceptions import ClientError, NoCredentialsError  # noqa: PLC0415

    if isinstance(exc, NoCredentialsError):
        return UserError(f"{where}: no credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a role)")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return UserError(f"{where}: {code}: {exc}")
        return RuntimeFailure(f"{where}: {code or 'error'}: {exc}")
    if isinstance(exc, ScraperError):
        return exc
    return RuntimeFailure(f"{where}: cannot read: {exc}")
