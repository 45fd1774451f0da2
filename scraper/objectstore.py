"""Where output lives in an S3-compatible bucket, and how a client reaches it.

One place knows the bucket layout and the client configuration, shared by the
worker's sink (``scraper.sinks_s3``, asyncio) and the export's reader
(``scraper.export_sources``, blocking):

    s3://BUCKET/PREFIX/<target>/<host>-<pid>-<start ms>-<seq>.jsonl

Credentials never pass through the settings: botocore's default chain finds
them (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a web identity token
for EKS IRSA, EKS Pod Identity's container endpoint, the instance profile).
GCS's interoperability API and MinIO take HMAC keys through the same two
variables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from scraper.errors import UserError

SCHEME = "s3://"
SEGMENT_SUFFIX = ".jsonl"
# The rules AWS, GCS and MinIO share: 3-63 lowercase letters, digits, dots, hyphens.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def is_bucket_url(location: str) -> bool:
    return location.startswith(SCHEME)


@dataclass(frozen=True, slots=True)
class BucketUrl:
    """``s3://bucket/some/prefix``: a bucket and a key prefix (no slashes at its ends)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, location: str) -> BucketUrl:
        if not is_bucket_url(location):
            raise UserError(f"{location!r}: not an object-storage URL (expected s3://BUCKET[/PREFIX])")
        bucket, _, prefix = location[len(SCHEME) :].partition("/")
        if not _BUCKET_NAME.fullmatch(bucket):
            raise UserError(f"{location!r}: {bucket!r} is not a valid bucket name (3-63 of a-z 0-9 . -)")
        return cls(bucket=bucket, prefix=prefix.strip("/"))

    def target_prefix(self, target: str) -> str:
        """The key prefix every segment of ``target`` starts with (ends in a slash)."""
        return f"{self.prefix}/{target}/" if self.prefix else f"{target}/"

    def segment_key(self, target: str, stem: str, seq: int) -> str:
        # Zero-padded so a listing (lexicographic) shows a process's segments in order.
        return f"{self.target_prefix(target)}{stem}-{seq:06d}{SEGMENT_SUFFIX}"

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"


@dataclass(frozen=True, slots=True)
class S3Options:
    """Client and segment settings (the ``[s3]`` section, ``SCRAPER_S3_*``)."""

    endpoint_url: str = ""  # empty: AWS; e.g. https://storage.googleapis.com, http://minio:9000
    region: str = ""  # empty: botocore's own resolution (AWS_REGION, profile), else us-east-1
    addressing_style: str = "auto"  # auto | path | virtual; MinIO behind a plain hostname wants path
    segment_bytes: int = 16 * 1024 * 1024  # roll (upload) a segment at this size ...
    segment_max_age_s: float = 5.0  # ... or when its oldest line is this old ...
    # ... or when a finished page has waited this long for its upload: a
    # page's follow-ups (the next cursor of its chain) are enqueued only when
    # it is acknowledged, so a long hold stalls every chain in the segment.
    hold_s: float = 1.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    max_attempts: int = 8  # botocore's own retries (standard mode: backoff, throttling-aware)

    def validate(self) -> None:
        if self.addressing_style not in ("auto", "path", "virtual"):
            raise UserError(f"s3 addressing_style must be auto, path or virtual, got {self.addressing_style!r}")
        if self.segment_bytes < 64 * 1024:
            raise UserError(f"s3 segment_bytes must be at least 65536, got {self.segment_bytes}")
        if self.segment_max_age_s <= 0:
            raise UserError(f"s3 segment_max_age_s must be positive, got {self.segment_max_age_s}")
        if self.hold_s <= 0:
            raise UserError(f"s3 hold_s must be positive, got {self.hold_s}")

    def hold_limit_s(self, claim_idle_s: float) -> float:
        """How long a finished page may wait for its segment's upload.

        ``hold_s`` keeps cursor chains moving (a chain advances only when its
        page settles). Held entries are re-claimed by their live consumer
        (workers.leases), so the hold never makes them look abandoned; the
        quarter of ``claim_idle_s`` still bounds it for a consumer whose
        refresh is late.
        """
        return min(self.segment_max_age_s, self.hold_s, claim_idle_s / 4)


def config_kwargs(options: S3Options) -> dict[str, Any]:
    """Keyword arguments for ``botocore.config.Config`` and aiobotocore's ``AioConfig``."""
    return {
        "connect_timeout": options.connect_timeout_s,
        "read_timeout": options.read_timeout_s,
        "retries": {"max_attempts": options.max_attempts, "mode": "standard"},
        "s3": {"addressing_style": options.addressing_style},
        # botocore >= 1.36 adds CRC32 checksum headers/trailers by default, which
        # GCS's interoperability API and older MinIO releases reject. Integrity
        # comes from Content-MD5 instead, which every S3-compatible store checks.
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }


def client_kwargs(options: S3Options) -> dict[str, Any]:
    """``endpoint_url``/``region_name`` for ``create_client('s3', ...)``; empty ones left to botocore."""
    kwargs: dict[str, Any] = {}
    if options.endpoint_url:
        kwargs["endpoint_url"] = options.endpoint_url
    if options.region:
        kwargs["region_name"] = options.region
    return kwargs


def blocking_client(options: S3Options) -> Any:
    """A plain botocore S3 client (for the export, which is not asyncio)."""
    # Imported here: the settings import this module, and every command would
    # otherwise pay for loading botocore.
    import botocore.session  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    session = botocore.session.get_session()
    return session.create_client("s3", config=Config(**config_kwargs(options)), **client_kwargs(options))
