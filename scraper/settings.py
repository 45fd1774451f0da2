"""One typed settings tree, read once at the CLI and passed down.

Precedence, lowest first: the dataclass defaults < ``config/scraper.toml`` <
``config/targets/<name>.toml`` < environment (``SCRAPER_<SECTION>_<FIELD>``,
e.g. ``SCRAPER_REDIS_URL``, ``SCRAPER_WORKER_PROCESSES``) < command-line flags.
Nothing below the CLI reads the environment.
"""

from __future__ import annotations

import dataclasses
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
    user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) scraper/0.1"
    referer: str = "https://www.bilibili.com"
    cookie: str = ""  # secret: from SCRAPER_COOKIE, never logged
    cookie_file: str = ""  # or a path to a file holding the cookie


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    processes: int = 2
    concurrency: int = 128  # consumer coroutines per process
    batch_size: int = 32  # XREADGROUP COUNT
    block_ms: int = 500  # XREADGROUP BLOCK
    settle_interval_ms: int = 20  # how often finished pages are flushed + acknowledged
    output_dir: str = "output"  # a folder, or s3://BUCKET/PREFIX for object storage ([s3] section)
    fsync: bool = False
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
) -> Settings:
    """Build the settings tree. ``overrides`` are the command-line flags (None = not given)."""
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
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    worker = settings.worker
    if worker.processes < 1:
        raise UserError(f"processes must be at least 1, got {worker.processes}")
    if worker.concurrency < 1:
        raise UserError(f"concurrency must be at least 1, got {worker.concurrency}")
    if worker.max_attempts < 1:
        raise UserError(f"max_attempts must be at least 1, got {worker.max_attempts}")
    if settings.target.simulate not in ("auto", "always", "never"):
        raise UserError(f"simulate must be auto, always or never, got {settings.target.simulate!r}")
    if settings.log.format not in ("text", "json"):
        raise UserError(f"log format must be text or json, got {settings.log.format!r}")
    if settings.target.page_window < 1:
        raise UserError(f"page_window must be at least 1, got {settings.target.page_window}")
    if is_bucket_url(worker.output_dir):
        BucketUrl.parse(worker.output_dir)
        settings.s3.validate()
    if settings.target.page_size < 1 or settings.target.page_size > 20:
        raise UserError(f"page_size must be 1..20 (the API caps it at 20), got {settings.target.page_size}")


def as_dict(settings: Settings) -> dict[str, Any]:
    """For display; the cookie is masked."""
    data = dataclasses.asdict(settings)
    if data["http"]["cookie"]:
        data["http"]["cookie"] = "***"
    return data
