"""Settings precedence: defaults < scraper.toml < target TOML < environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from scraper.errors import UserError
from scraper.settings import load_settings


def _config(tmp_path: Path, base: str = "", target: str = "") -> Path:
    (tmp_path / "targets").mkdir(parents=True)
    (tmp_path / "scraper.toml").write_text(base)
    (tmp_path / "targets" / "t.toml").write_text(target or 'adapter = "bilibili"\n')
    return tmp_path


def test_layers_in_order(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        base="[worker]\nprocesses = 3\nconcurrency = 10\nbatch_size = 7\n",
        target='base_url = "http://127.0.0.1:1"\n[worker]\nconcurrency = 20\n',
    )
    env = {"SCRAPER_WORKER_BATCH_SIZE": "9", "SCRAPER_PROCESSES": "4", "SCRAPER_REDIS_URL": "redis://h:1/0"}
    settings = load_settings(
        "t", config_dir=str(config), environ=env, overrides={"worker": {"processes": 5, "concurrency": None}}
    )
    assert settings.worker.processes == 5  # flag beats env
    assert settings.worker.batch_size == 9  # env beats TOML
    assert settings.worker.concurrency == 20  # target TOML beats scraper.toml; None flag ignored
    assert settings.redis.url == "redis://h:1/0"
    assert settings.target.base_url == "http://127.0.0.1:1"
    assert settings.target.name == "t"


def test_repo_config_loads() -> None:
    settings = load_settings("video-list", environ={})
    assert settings.target.adapter == "bilibili"
    assert settings.target.page_size == 20
    assert settings.target.base_url == "https://api.bilibili.com"


def test_unknown_target_lists_known(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"unknown target 'nope'.*known targets: t"):
        load_settings("nope", config_dir=str(_config(tmp_path)), environ={})


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("[worker]\nprocesses = 'many'\n", "expected int"),
        ("[worker]\nprocesess = 2\n", "unknown setting 'procesess'"),
        ("[nope]\nx = 1\n", "unknown section [nope]"),
        ("[worker\n", "invalid TOML"),
        ("[worker]\nprocesses = 0\n", "worker.processes, SCRAPER_WORKER_PROCESSES\\) must be at least 1"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path: Path, base: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        load_settings("t", config_dir=str(_config(tmp_path, base=base)), environ={})


def test_missing_config_dir(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="config directory not found"):
        load_settings("t", config_dir=str(tmp_path / "absent"), environ={})


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="environment.*concurrency: expected int"):
        load_settings("t", config_dir=str(_config(tmp_path)), environ={"SCRAPER_CONCURRENCY": "lots"})


def test_relative_paths_are_relative_to_the_project_root(tmp_path: Path) -> None:
    config = _config(tmp_path / "proj" / "config", base='[worker]\noutput_dir = "out"\n')
    settings = load_settings("t", config_dir=str(config), environ={"SCRAPER_REDIS_STATE_DIR": "st"})
    root = tmp_path / "proj"
    assert settings.worker.output_dir == str(root / "out")
    assert settings.redis.state_dir == str(root / "st")
    assert settings.target.videos == str(root / "config" / "video-list.txt")
    assert settings.worker.heartbeat_dir == "/tmp/scraper-heartbeat"  # absolute stays


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SCRAPER_WORKER_BATCH_SIZE": "0"}, r"--batch-size \(worker.batch_size, SCRAPER_WORKER_BATCH_SIZE\)"),
        ({"SCRAPER_WORKER_BLOCK_MS": "0"}, r"worker.block_ms \(SCRAPER_WORKER_BLOCK_MS\) must be at least 1"),
        ({"SCRAPER_TARGET_RATE_LIMIT": "-0.5"}, r"must be at least 0, got -0.5"),
        ({"SCRAPER_WORKER_METRICS_PORT": "65536"}, r"must be 0 \(off\) or 1-65535, got 65536"),
        ({"SCRAPER_HTTP_TIMEOUT_S": "inf"}, r"must be a finite number"),
        ({"SCRAPER_REDIS_CONNECT_TIMEOUT_S": "0"}, r"must be greater than 0, got 0"),
        ({"SCRAPER_WORKER_BACKOFF_MAX_S": "0.5"}, r"backoff_max_s \(0.5\) must be at least"),
        ({"SCRAPER_TARGET_PAGE_SIZE": "21"}, r"must be 1-20, got 21"),
    ],
)
def test_every_number_is_checked_once_where_settings_are_built(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(UserError, match=message):
        load_settings("t", config_dir=str(_config(tmp_path)), environ=env)


def test_processes_cap_is_lifted_by_force(tmp_path: Path) -> None:
    from scraper.settings import max_processes

    too_many = {"worker": {"processes": max_processes() + 1}}
    config = str(_config(tmp_path))
    with pytest.raises(UserError, match="pass --force if you mean it"):
        load_settings("t", config_dir=config, environ={}, overrides=too_many)
    forced = load_settings("t", config_dir=config, environ={}, overrides=too_many, force=True)
    assert forced.worker.processes == max_processes() + 1
