"""The simulator's settings (``scraper simulate`` flags map one to one)."""

from __future__ import annotations

from dataclasses import dataclass

PROFILES = ("real", "legacy-open")
REAL_MAX_PAGE = 250  # the real service's legacy depth (~5,000 roots)


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    seed: int = 1
    videos: int = 24
    comments: int = 5000
    page_size: int = 20
    # "real": like the service (WBI on the cursor endpoint, buvid3 + browser
    # User-Agent, login gating, legacy depth cap); "legacy-open": none of it,
    # every endpoint open to anyone (comparison benchmarks, the old behaviour).
    profile: str = "real"
    session: str = ""  # the SESSDATA value that counts as logged in ("" = nobody is)
    key_rotate_s: float = 86_400.0  # WBI keys change every this many seconds; 0 = never
    max_page: int | None = None  # legacy pages past this answer -400; 0 = no cap; None = profile's (250 / 0)
    latency_ms: float = 0.0  # added to every API response
    fail_rate: float = 0.0  # HTTP 500, HTTP 503 or JSON code -503 (picked by the fault's hash)
    truncate_rate: float = 0.0  # full Content-Length, half the body, then close
    bad_json_rate: float = 0.0  # HTTP 200 with invalid JSON
    slow_rate: float = 0.0  # wait slow_ms, then answer normally
    slow_ms: float = 3000.0
    reset_rate: float = 0.0  # drop the connection without any response
    max_faults_per_url: int = 2  # so a client with >= max + 1 attempts always completes
    rate_limit: float = 0.0  # requests/s per client address (token bucket); 0 = none
    rate_burst: int = 5
    ban_seconds: float = 10.0
    ban_shape: str = "mixed"  # "html" (HTTP 412 page) | "json" (200, code -412) | "mixed" (in turn)
    throttle_status: int = 412  # 412 = ban as above; 429 = HTTP 429 + Retry-After, no ban
    cache_mb: float = 256.0  # rendered page bodies kept (LRU); 333k comments take ~200 MB
    warm_cache: bool = True  # render every page a crawl asks for before serving (up to cache_mb)

    def __post_init__(self) -> None:
        if self.ban_shape not in ("html", "json", "mixed"):
            raise ValueError(f"ban_shape must be html, json or mixed, got {self.ban_shape!r}")
        if self.throttle_status not in (412, 429):
            raise ValueError(f"throttle_status must be 412 or 429, got {self.throttle_status}")
        if self.rate_limit < 0 or self.latency_ms < 0 or self.slow_ms < 0:
            raise ValueError("rate_limit, latency_ms and slow_ms must be >= 0")
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        if self.key_rotate_s < 0:
            raise ValueError("key_rotate_s must be >= 0")
        if self.max_page is not None and self.max_page < 0:
            raise ValueError("max_page must be >= 0")

    @property
    def hostile(self) -> bool:
        """Whether the service's gates are on (the "real" profile)."""
        return self.profile == "real"

    def legacy_cap(self, corpus_cap: int = 0) -> int:
        """Legacy depth in pages (0 = none): the option, else the corpus's, else the profile's."""
        if self.max_page is not None:
            return self.max_page
        if corpus_cap:
            return corpus_cap
        return REAL_MAX_PAGE if self.hostile else 0
