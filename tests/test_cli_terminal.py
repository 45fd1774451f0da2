"""`scraper run` on a terminal: a live view, log lines printed above it (never over it).

The terminal is a real pseudo-terminal from util-linux `script`; the workers
are real processes writing to the same terminal.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import SCRAPER, cli_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.mark.skipif(shutil.which("script") is None, reason="util-linux script(1) provides the pseudo-terminal")
def test_live_view_and_log_lines_do_not_collide(tmp_path: Path, redis_url: str) -> None:
    videos = tmp_path / "videos.txt"
    videos.write_text("av2\nBV17x411w7KC\n")
    command = [
        *SCRAPER,
        *["run", "--target", "video-list", "--redis-url", redis_url, "--simulate", "always"],
        *["--videos", str(videos), "--output-dir", str(tmp_path / "out"), "--log-level", "INFO"],
        *["--processes", "2", "--concurrency", "8"],
    ]
    env = cli_env(tmp_path, COLUMNS="160", TERM="xterm-256color")
    result = subprocess.run(
        ["script", "-qec", shlex.join(command), "/dev/null"],
        env=env,
        capture_output=True,  # bytes: text mode would turn the terminal's \r\n into \n
        timeout=180,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    raw = result.stdout.decode("utf-8", "replace")
    assert result.returncode == 0, raw
    assert "Traceback" not in raw
    # The workers' log lines (another process, same terminal) arrive whole, each on
    # a line of its own: the live line is erased first, then redrawn below them.
    started = re.findall(r"(?:^|\n|\x1b\[2K)(\d\d:\d\d:\d\d INFO [^\r\n\x1b]*: started \(uvloop[^\r\n\x1b]*)\r\n", raw)
    assert len(started) == 2, raw
    lines = [ANSI.sub("", line) for line in re.split(r"\r\n|\r|\n", raw)]
    for line in lines:
        if " INFO " in line:
            assert re.fullmatch(r"\d\d:\d\d:\d\d INFO .*", line), line  # nothing glued before a log line
            assert "pages/s" not in line  # nor a piece of the view after it
    # The view: a bar, then the final frame with the run's real average rate.
    assert "━" in raw
    # 19 pages fetched: the two videos' cursor chains of 6 and 4 list pages (followed
    # inline, each page counted as it is done) and 4 + 5 reply-thread pages.
    assert any("100.0% 19/19 pages" in line and "pages/s average" in line for line in lines), raw
    # `run` crawls the bundled simulator in its own namespace: output under simulated/
    output = tmp_path / "out" / "simulated" / "video-list.jsonl"
    assert any(line.startswith(f"run video-list: 400 comments -> {output} ") for line in lines), raw
