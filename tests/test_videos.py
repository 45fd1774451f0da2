"""Video list input: BV <-> aid, every accepted form, every bad-line case."""

from __future__ import annotations

from pathlib import Path

import pytest

from scraper.errors import UserError
from scraper.videos import aid_to_bvid, bvid_to_aid, parse_video_lines, parse_video_ref, read_video_list


@pytest.mark.parametrize(("aid", "bvid"), [(170001, "BV17x411w7KC"), (2, "BV1xx411c7mD")])
def test_known_pairs(aid: int, bvid: str) -> None:
    assert bvid_to_aid(bvid) == aid
    assert aid_to_bvid(aid) == bvid


@pytest.mark.parametrize("aid", [1, 99, 170001, 2**31, 2**40 + 12345, 2**51 - 1])
def test_round_trip(aid: int) -> None:
    assert bvid_to_aid(aid_to_bvid(aid)) == aid


@pytest.mark.parametrize(
    "ref",
    [
        "BV17x411w7KC",
        "av170001",
        "AV170001",
        "https://www.bilibili.com/video/BV17x411w7KC/?spm_id_from=333.788",
        "https://www.bilibili.com/video/BV17x411w7KC",
        "http://m.bilibili.com/video/av170001",
        "  BV17x411w7KC  ",
    ],
)
def test_every_form_names_the_same_video(ref: str) -> None:
    video = parse_video_ref(ref)
    assert (video.aid, video.bvid) == (170001, "BV17x411w7KC")


def test_list_skips_blanks_comments_and_duplicates() -> None:
    lines = ["# my videos", "", "BV17x411w7KC", "   ", "av170001", "  av2  ", "BV1xx411c7mD", "# end"]
    result = parse_video_lines(lines, "list.txt")
    assert [v.aid for v in result.videos] == [170001, 2]
    assert result.lines_read == 4
    assert result.duplicates == 2


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("BV17x411w7K", "malformed BV id"),  # 8 characters
        ("BV17x411w7K0", "malformed BV id"),  # 0 is not base58
        ("BV27x411w7KC", "malformed BV id"),  # not BV1
        ("av", "not a BV id, av id or video URL"),
        ("av0", "out of range"),
        ("video 170001", "not a BV id, av id or video URL"),
        ("https://www.youtube.com/watch?v=abc", "not a bilibili video URL"),
        ("https://www.bilibili.com/bangumi/play/ep1", "not a bilibili video URL"),
    ],
)
def test_bad_line_names_file_and_line(line: str, reason: str) -> None:
    with pytest.raises(UserError) as info:
        parse_video_lines(["BV17x411w7KC", "# fine", line, "av2"], "videos.txt")
    message = str(info.value)
    assert message.startswith("videos.txt:3: ")
    assert reason in message


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="video list not found"):
        read_video_list(tmp_path / "nope.txt")
    with pytest.raises(UserError, match="is a directory"):
        read_video_list(tmp_path)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00BV")
    with pytest.raises(UserError, match="not UTF-8"):
        read_video_list(binary)
