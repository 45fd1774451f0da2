"""One typed settings tree, read once at the CLI and passed down.

Precedence, lowest first: the dataclass defaults < ``config/scraper.toml`` <
``config/targets/<name>.toml`` < environment (``SCRAPER_<SECTION>_<FIELD>``,
e.g. ``SCRAPER_REDIS_URL``, ``SCRAPER_WORKER_PROCESSES``) < command-line flags.
Nothing below the CLI reads the environment.

Every number is checked here, once (:data:`NUMBER_RULES`); every path comes
out absolute, a relative one taken from the project root, the folder that
holds the config dir (:data:`PATH_SETTINGS`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from scraper.errors import UserError
from scraper.objectstore import BucketUrl, S3Options, is_bucket_url

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "SCRAPER_"
# Environment names that read better than the generated SECTION_FIELD form.
ENV_ALIASES = {
    "SCRAPER_COOKIE": ("http", "cookie"),
    "SCRAPER_PROCESSES": ("worker", "processes"),
    "SCRAPER_CONCURRENCY": ("worker", "concurrency"),
    "SCRAPER_OUTPUT_DIR": ("worker", "output_dir"),
    "SCRAPER_BASE_URL": ("target", "base_url"),
    "SCRAPER_RATE_LIMIT": ("target", "rate_limit"),
}


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str = ""  # empty: the embedded redis-server under state_dir
    key_prefix: str = "scraper"
    connect_timeout_s: float = 10.0  # how long a command waits for Redis at start
    state_dir: str = ".state"  # embedded Redis data (AOF) lives here


@dataclass(frozen=True, slots=True)
class HttpSettings:
    timeout_s: float = 20.0
    connect_timeout_s: float = 5.0
    # A browser's User-Agent: the service answers -352 (risk control) to anything else.
    user_agent: str = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
    )
    referer: str = "https://www.bilibili.com"
    cookie: str = ""  # secret: from SCRAPER_COOKIE (SESSDATA=...), never logged
    cookie_file: str = ""  # or a path to a file holding the cookie
    # The only host the login cookie is sent to (over https; loopback always):
    # empty = the host of the target's configured base_url, never one read from Redis.
    cookie_host: str = ""


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    processes: int = 2
    concurrency: int = 128  # consumer coroutines per process
    batch_size: int = 32  # pages held beyond the coroutines; a claim fills every free slot in one XREADGROUP
    block_ms: int = 500  # XREADGROUP BLOCK
    settle_interval_ms: int = 20  # how often finished pages are flushed + acknowledged
    output_dir: str = "output"  # a folder, or s3://BUCKET/PREFIX for object storage ([s3] section)
    fsync: bool = True  # fsync each shard batch before its acknowledgement (README: Faults)
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    claim_idle_s: float = 90.0  # pending this long on a silent consumer -> taken over
    drain_timeout_s: float = 25.0
    heartbeat_s: float = 2.0
    heartbeat_dir: str = "/tmp/scraper-heartbeat"
    restart_limit: int = 5  # child deaths ...
    restart_window_s: float = 60.0  # ... within this window stop the worker
    metrics_port: int = 0  # 0: no /metrics endpoint
    inflight_per_host: int = 0  # cluster-wide cap on requests in flight; 0: none
    export_memory_mb: int = 32  # working memory of `export`, whatever the number of comments
    chain_inline: int = 10  # cursor pages a coroutine follows at once before handing the chain back to the queue


@dataclass(frozen=True, slots=True)
class TargetSettings:
    name: str = "video-list"
    adapter: str = "bilibili"
    base_url: str = "https://api.bilibili.com"
    videos: str = "config/video-list.txt"
    page_size: int = 20
    page_window: int = 50  # main pages fanned out ahead of the deepest page seen (bounds -400 waste)
    sub_replies: bool = True
    rate_limit: float = 0.0  # requests/s to the host, all pods together; 0: unlimited
    rate_burst: int = 5
    min_rate: float = 0.5  # AIMD never cuts below this
    ban_cooldown_s: float = 60.0  # cooldown after a ban signal without Retry-After
    simulate: str = "auto"  # auto | always | never: fall back to the bundled simulator
    # auto: legacy page numbers in parallel up to the service's depth, then the cursor
    # chain beyond it | cursor: mode 2 (newest first), a chain per video, stable |
    # pages: mode 3 by page number, parallel within a video (hot order) | legacy:
    # /x/v2/reply only, capped near page 250
    root_paging: str = "auto"
    # auto: legacy pages fanned out at once (the service's depth, ~250 in 2026). Past
    # it, pages are probed one at a time (for a deeper server); a -400 anywhere hands
    # the video to the cursor past the lowest refused page. 0: every page at once.
    legacy_depth: int = 250
    pages_window: int = 10  # root_paging = "pages": pages opened ahead (bounds the empty pages past the end)
    # fetched / announced comments a video needs to count as complete (the
    # service's counts include a few comments nobody can see).
    complete_ratio: float = 0.98
    credential_retries: int = 10  # -403/-352 retries of one page after a renewal, apart from max_attempts
    credential_retry_s: float = 0.2  # delay of such a retry (-352 also cools the limiter down)


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "INFO"
    format: str = "text"  # text | json


@dataclass(frozen=True, slots=True)
class Settings:
    redis: RedisSettings = field(default_factory=RedisSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    target: TargetSettings = field(default_factory=TargetSettings)
    log: LogSettings = field(default_factory=LogSettings)
    s3: S3Options = field(default_factory=S3Options)
    config_dir: str = "config"

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the project root (config_dir's parent)."""
        candidate = Path(path)
        if candidate.is_absolute():
            return candidate
        return Path(self.config_dir).resolve().parent / candidate


SECTIONS = ("redis", "http", "worker", "target", "log", "s3")


def default_config_dir() -> Path:
    """``./config`` when run from a checkout, else the one beside the package."""
    local = Path("config")
    if (local / "scraper.toml").is_file():
        return local.resolve()
    return PACKAGE_ROOT / "config"


def _coerce(value: Any, kind: Any, where: str) -> Any:
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        if kind is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        name = getattr(kind, "__name__", str(kind))
        raise UserError(f"{where}: expected {name}, got {value!r}") from None


def _apply(section_obj: Any, values: Mapping[str, Any], where: str) -> Any:
    hints = get_type_hints(type(section_obj))
    known = {f.name for f in fields(section_obj)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise UserError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(known))})")
        changes[key] = _coerce(value, hints[key], f"{where}: {key}")
    return replace(section_obj, **changes)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None


def _merge_layer(settings: Settings, layer: Mapping[str, Mapping[str, Any]], where: str) -> Settings:
    for section, values in layer.items():
        if section not in SECTIONS:
            raise UserError(f"{where}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        if not isinstance(values, Mapping):
            raise UserError(f"{where}: [{section}] must be a table")
        current = getattr(settings, section)
        settings = replace(settings, **{section: _apply(current, values, f"{where} [{section}]")})
    return settings


def known_targets(config_dir: Path) -> list[str]:
    return sorted(p.stem for p in (config_dir / "targets").glob("*.toml"))


def env_layer(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    layer: dict[str, dict[str, str]] = {}
    section_fields = {name: {f.name for f in fields(getattr(Settings(), name))} for name in SECTIONS}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        if key in ENV_ALIASES:
            section, name = ENV_ALIASES[key]
            layer.setdefault(section, {})[name] = value
            continue
        rest = key[len(ENV_PREFIX) :].lower()
        section, _, name = rest.partition("_")
        if section in section_fields and name in section_fields[section]:
            layer.setdefault(section, {})[name] = value
    return layer


def load_settings(
    target: str | None,
    *,
    config_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    force: bool = False,
) -> Settings:
    """Build the settings tree. ``overrides`` are the command-line flags (None = not given).

    ``force`` lifts the sanity cap on processes (``--force``)."""
    environ = os.environ if environ is None else environ
    chosen_dir = config_dir or environ.get("SCRAPER_CONFIG_DIR")
    directory = Path(chosen_dir).resolve() if chosen_dir else default_config_dir()
    if not directory.is_dir():
        raise UserError(f"{directory}: config directory not found")
    settings = Settings(config_dir=str(directory))

    base_file = directory / "scraper.toml"
    if base_file.is_file():
        settings = _merge_layer(settings, _read_toml(base_file), str(base_file))

    if target is not None:
        target_file = directory / "targets" / f"{target}.toml"
        if not target_file.is_file():
            names = ", ".join(known_targets(directory)) or "none"
            raise UserError(f"unknown target {target!r}: no {target_file} (known targets: {names})")
        layer = _read_toml(target_file)
        # A target file's top-level keys describe the target itself; tables may
        # override other sections (e.g. [http] headers for that site).
        flat = {k: v for k, v in layer.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in layer.items() if isinstance(v, dict)}
        settings = _merge_layer(settings, {"target": flat, **tables}, str(target_file))
        settings = replace(settings, target=replace(settings.target, name=target))

    settings = _merge_layer(settings, env_layer(environ), "environment")
    if overrides:
        cleaned = {section: {k: v for k, v in values.items() if v is not None} for section, values in overrides.items()}
        settings = _merge_layer(settings, cleaned, "command line")
    _validate(settings, force=force)
    return _absolute_paths(settings)


# The settings that are paths. One rule for all of them: relative to the project
# root (the config dir's parent), whatever the current directory; the CLI makes
# the paths given as flags absolute (relative to the current directory) first.
PATH_SETTINGS = (("redis", "state_dir"), ("worker", "output_dir"), ("worker", "heartbeat_dir"), ("target", "videos"))


def _absolute_paths(settings: Settings) -> Settings:
    for section, name in PATH_SETTINGS:
        current = getattr(settings, section)
        value = getattr(current, name)
        if value and not is_bucket_url(value):  # s3://BUCKET/PREFIX is no path
            absolute = str(settings.resolve(os.path.expanduser(value)))
            settings = replace(settings, **{section: replace(current, **{name: absolute})})
    if settings.http.cookie_file:
        cookie_file = str(settings.resolve(os.path.expanduser(settings.http.cookie_file)))
        settings = replace(settings, http=replace(settings.http, cookie_file=cookie_file))
    return settings


@dataclass(frozen=True, slots=True)
class Bound:
    """What a number may be: ``low``/``high`` inclusive unless ``open_low`` (then > low)."""

    low: float
    high: float = math.inf
    open_low: bool = False
    zero_ok: bool = False  # 0 means "off" (e.g. a metrics port of 0)

    def check(self, value: float) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if self.zero_ok and value == 0:
            return None
        too_low = value <= self.low if self.open_low else value < self.low
        if too_low or value > self.high:
            return f"must be {self.describe()}, got {_num(value)}"
        return None

    def describe(self) -> str:
        zero = "0 (off) or " if self.zero_ok else ""
        if self.high == math.inf:
            return f"{zero}{'greater than' if self.open_low else 'at least'} {_num(self.low)}"
        return f"{zero}{_num(self.low)}-{_num(self.high)}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


POSITIVE = Bound(0, open_low=True)  # timeouts, intervals: 0 would spin or never wait
NON_NEGATIVE = Bound(0)  # rates, delays: 0 means none
COUNT = Bound(1)  # counts: 0 would hang (an XREADGROUP COUNT 0 claims nothing, forever)
PORT = Bound(1, 65535, zero_ok=True)
SHARE = Bound(0, 1)

# Every numeric setting and what it may be; checked once, where settings are built.
NUMBER_RULES: dict[tuple[str, str], Bound] = {
    ("redis", "connect_timeout_s"): POSITIVE,
    ("http", "timeout_s"): POSITIVE,
    ("http", "connect_timeout_s"): POSITIVE,
    ("worker", "processes"): COUNT,
    ("worker", "concurrency"): Bound(1, 10_000),
    ("worker", "batch_size"): Bound(1, 10_000),
    ("worker", "block_ms"): COUNT,  # BLOCK 0 waits forever: a burst worker would never notice the end
    ("worker", "settle_interval_ms"): COUNT,
    ("worker", "max_attempts"): COUNT,
    ("worker", "export_memory_mb"): COUNT,
    ("worker", "backoff_base_s"): NON_NEGATIVE,
    ("worker", "backoff_max_s"): NON_NEGATIVE,
    ("worker", "claim_idle_s"): POSITIVE,
    ("worker", "drain_timeout_s"): POSITIVE,
    ("worker", "heartbeat_s"): POSITIVE,
    ("worker", "restart_limit"): COUNT,
    ("worker", "restart_window_s"): POSITIVE,
    ("worker", "metrics_port"): PORT,
    ("worker", "inflight_per_host"): NON_NEGATIVE,
    ("target", "page_size"): Bound(1, 20),  # the API caps it at 20
    ("target", "page_window"): COUNT,
    ("target", "legacy_depth"): NON_NEGATIVE,
    ("target", "rate_limit"): NON_NEGATIVE,
    ("target", "rate_burst"): COUNT,
    ("target", "min_rate"): POSITIVE,
    ("target", "ban_cooldown_s"): NON_NEGATIVE,
    ("s3", "segment_bytes"): Bound(64 * 1024),  # smaller segments only multiply the PUTs
    ("s3", "segment_max_age_s"): POSITIVE,
    ("s3", "hold_s"): POSITIVE,
    ("s3", "connect_timeout_s"): POSITIVE,
    ("s3", "read_timeout_s"): POSITIVE,
    ("s3", "max_attempts"): COUNT,
}
# The command-line flag of a setting, where it has one (named in the error).
FLAGS: dict[tuple[str, str], str] = {
    ("worker", "processes"): "--processes",
    ("worker", "concurrency"): "--concurrency",
    ("worker", "batch_size"): "--batch-size",
    ("worker", "max_attempts"): "--max-attempts",
    ("worker", "backoff_base_s"): "--backoff-base",
    ("worker", "claim_idle_s"): "--claim-idle",
    ("worker", "drain_timeout_s"): "--drain-timeout",
    ("worker", "metrics_port"): "--metrics-port",
    ("worker", "inflight_per_host"): "--inflight-per-host",
    ("http", "timeout_s"): "--timeout",
    ("target", "rate_limit"): "--rate-limit",
    ("target", "rate_burst"): "--rate-burst",
}
PROCESSES_PER_CORE = 4  # more processes than this per core only fight over the CPU


def setting_label(section: str, name: str) -> str:
    flag = FLAGS.get((section, name))
    env = f"SCRAPER_{section.upper()}_{name.upper()}"
    return f"{flag} ({section}.{name}, {env})" if flag else f"{section}.{name} ({env})"


def check_number(label: str, value: float, bound: Bound) -> None:
    """One line naming the setting (flag, config key, environment variable) and the rule."""
    problem = bound.check(value)
    if problem:
        raise UserError(f"{label} {problem}")


def max_processes() -> int:
    return PROCESSES_PER_CORE * (os.cpu_count() or 1)


def _validate(settings: Settings, *, force: bool = False) -> None:
    for (section, name), bound in NUMBER_RULES.items():
        check_number(setting_label(section, name), getattr(getattr(settings, section), name), bound)
    worker = settings.worker
    if worker.backoff_max_s < worker.backoff_base_s:
        raise UserError(
            f"worker.backoff_max_s ({worker.backoff_max_s}) must be at least worker.backoff_base_s "
            f"({worker.backoff_base_s})"
        )
    if worker.processes > max_processes() and not force:
        raise UserError(
            f"--processes {worker.processes} is more than {PROCESSES_PER_CORE} x {os.cpu_count()} CPU cores "
            f"({max_processes()}); pass --force if you mean it"
        )
    if settings.target.simulate not in ("auto", "always", "never"):
        raise UserError(f"simulate must be auto, always or never, got {settings.target.simulate!r}")
    if settings.target.root_paging not in ("auto", "cursor", "pages", "legacy"):
        raise UserError(f"root_paging must be auto, cursor, pages or legacy, got {settings.target.root_paging!r}")
    if settings.target.pages_window < 1:
        raise UserError(f"pages_window must be at least 1, got {settings.target.pages_window}")
    if not 0.0 < settings.target.complete_ratio <= 1.0:
        raise UserError(f"complete_ratio must be in (0, 1], got {settings.target.complete_ratio}")
    if settings.log.format not in ("text", "json"):
        raise UserError(f"log format must be text or json, got {settings.log.format!r}")
    if is_bucket_url(worker.output_dir):
        BucketUrl.parse(worker.output_dir)  # one line naming the bad bucket name
    settings.s3.validate()


def as_dict(settings: Settings) -> dict[str, Any]:
    """For display; the cookie is masked."""
    data = dataclasses.asdict(settings)
    if data["http"]["cookie"]:
        data["http"]["cookie"] = "***"
    return data
