"""The simulator's corpus: deterministic, exact totals, what a crawl must return."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from scraper.simulator import Corpus
from scraper.videos import parse_video_ref, read_video_list

# -- the corpus -------------------------------------------------------------------


def test_corpus_is_deterministic_and_ids_are_unique() -> None:
    first = Corpus.generate(seed=7, videos=12, comments=3000)
    again = Corpus.generate(seed=7, videos=12, comments=3000)
    other = Corpus.generate(seed=8, videos=12, comments=3000)
    rpids = first.expected_rpids()
    assert rpids == again.expected_rpids()
    assert [v.aid for v in first.videos] == [v.aid for v in again.videos]
    assert first.page_urls("http://h") == again.page_urls("http://h")
    assert rpids.isdisjoint(other.expected_rpids())
    assert [v.aid for v in first.videos] != [v.aid for v in other.videos]
    # as many distinct ids as comments: no id is handed out twice; only the
    # replies under video 4's deleted root (12022) cannot be crawled
    assert first.total_comments() == sum(v.acount for v in first.videos) == 3000
    hidden = sum(v.rcounts[i] for v in first.videos for i in v.gone_threads)
    assert [i for i, v in enumerate(first.videos) if v.gone_threads] == [4]
    assert rpids == first.all_rpids() and len(rpids) == first.expected_comment_count() == 3000 - hidden
    assert min(rpids) > 0
    aids = [v.aid for v in first.videos]
    assert len(set(aids)) == 12 and all(10**6 <= aid < 10**9 for aid in aids)
    assert [v.state for v in first.videos[:4]] == ["closed", "empty", "deleted", "ok"]
    assert all(v.state == "ok" and v.roots > 0 for v in first.videos[3:])
    assert first.videos[1].roots == 0


@pytest.mark.parametrize("comments", [500, 5000, 333_000])
def test_generate_hits_its_comment_total(comments: int) -> None:
    corpus = Corpus.generate(seed=1, videos=20, comments=comments)
    assert abs(corpus.expected_comment_count() - comments) <= comments * 0.05
    assert len(corpus.page_urls("")) == corpus.expected_pages()
    if comments == 333_000:
        # the design's benchmark job: ~20 comments per fetched page
        assert 16_000 <= corpus.expected_pages() <= 17_000
        roots = [r for v in corpus.videos for r in v.rcounts]
        with_replies = [r for r in roots if r]
        assert 0.2 <= len(with_replies) / len(roots) <= 0.3
        assert any(r <= 3 for r in with_replies)
        assert sum(r > 60 for r in with_replies) > 100  # threads of several reply pages


def test_small_corpora() -> None:
    assert Corpus.generate(seed=1, videos=0, comments=100).expected_pages() == 0
    one = Corpus.generate(seed=1, videos=1, comments=100)
    assert one.videos[0].state == "ok" and one.expected_comment_count() == 100
    three = Corpus.generate(seed=1, videos=3, comments=100)
    assert [v.state for v in three.videos] == ["closed", "empty", "ok"]


def test_video_refs_round_trip_through_the_parser(tmp_path: Path) -> None:
    corpus = Corpus.generate(seed=5, videos=10, comments=1000)
    refs = corpus.video_refs()
    assert refs == corpus.video_refs()
    assert len(refs) == 11
    assert any(r.startswith("BV1") for r in refs)
    assert any(r.startswith("av") for r in refs)
    assert any(r.startswith("https://www.bilibili.com/video/BV") for r in refs)
    parsed = [parse_video_ref(r).aid for r in refs]
    assert len(set(parsed)) == 10 and set(parsed) == {v.aid for v in corpus.videos}
    duplicated = [aid for aid in set(parsed) if parsed.count(aid) == 2]
    assert len(duplicated) == 1
    twice = [r for r, aid in zip(refs, parsed) if aid == duplicated[0]]
    assert twice[0] != twice[1]  # the duplicate comes in another form

    path = tmp_path / "videos.txt"
    corpus.write_videos(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ") and lines[1] == ""
    video_list = read_video_list(path)
    assert [v.aid for v in video_list.videos] == [v.aid for v in corpus.videos]
    assert video_list.duplicates == 1


def test_for_aids_makes_every_video_ok() -> None:
    aids = [170001, 2, 170001, 987654321]
    corpus = Corpus.for_aids(aids, seed=3, comments_per_video=150)
    assert [v.aid for v in corpus.videos] == [170001, 2, 987654321]
    assert all(corpus.video(aid).state == "ok" for aid in aids)  # type: ignore[union-attr]
    assert corpus.video(170001).bvid == "BV17x411w7KC"  # type: ignore[union-attr]
    assert corpus.expected_comment_count() == 3 * 150
    assert corpus.video(3) is None


def test_pinned_threads_deleted_roots_and_the_fewest_requests() -> None:
    corpus = Corpus.generate(seed=11, videos=8, comments=3000)
    pinned = [v for v in corpus.videos if v.has_pinned]
    assert pinned and pinned[0].pinned_replies > 20  # the first pinned thread spans several reply pages
    for video in pinned:
        rpids = corpus.video_rpids(video)
        thread = set(range(video.pinned_rpid, video.pinned_rpid + 1 + video.pinned_replies))
        assert thread <= rpids and video.pinned_rpid == min(rpids)
        assert corpus.root(video, video.pinned_rpid).pinned  # type: ignore[union-attr]
        assert video.pinned_rpid not in {corpus.list_rpid(video, p) for p in range(corpus.list_len(video))}
    gone = corpus.videos[4]
    (index,) = gone.gone_threads
    assert gone.rcounts[index] > 20
    first = gone.reply_rpid(index, 0)
    assert gone.root_rpid(index) in corpus.video_rpids(gone)
    assert corpus.video_rpids(gone).isdisjoint(range(first, first + gone.rcounts[index]))
    # 2 bootstrap requests + cursor pages per video + reply pages of threads longer than their preview
    by_hand = 2
    for video in corpus.videos:
        by_hand += max(1, math.ceil(video.roots / 20)) if video.state == "ok" else 1
        if video.pinned_replies > 3:
            by_hand += math.ceil(video.pinned_replies / 20)
        for i, rcount in enumerate(video.rcounts):
            if rcount > 3:
                by_hand += 1 if i in video.gone_threads else math.ceil(rcount / 20)
    assert corpus.minimal_requests() == by_hand
    plain = Corpus.generate(seed=11, videos=8, comments=3000, pinned=False)
    assert not any(v.has_pinned or v.gone_threads for v in plain.videos)
    assert plain.all_rpids() == plain.expected_rpids() and len(plain.all_rpids()) == 3000
